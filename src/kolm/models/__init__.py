"""Model architectures written for kolm and packaged as Hugging Face models.

Importing this package registers every kolm architecture with `transformers`'
Auto classes, so `AutoModelForCausalLM.from_pretrained(dir)` loads kolm model
dirs. (`import kolm` alone stays light and registers nothing.)
"""

from kolm.models import registry as registry  # noqa: F401  (registration happens on import)
