# kolm serve on CPU. Build and run:
#   docker build -t kolm-serve .
#   docker run -p 8000:8000 -v $PWD/runs/tiny/pretrain/final:/models/model -e KOLM_API_KEY=secret kolm-serve
# Inside the container the server listens on all interfaces (0.0.0.0), so set KOLM_API_KEY.
FROM python:3.11-slim

WORKDIR /opt/kolm
COPY pyproject.toml README.md ./
COPY src ./src
# CPU-only torch first, so the project's torch requirement is met without the multi-GB CUDA build.
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir ".[serve]"

ENV GRADIO_ANALYTICS_ENABLED=False
EXPOSE 8000
ENTRYPOINT ["kolm", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "/models/model"]
