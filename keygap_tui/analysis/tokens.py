"""Token text: what each stored token id reads as, from the commit markers the ingest wrote.

The ingest stores, with every committed sample, the text of each kept token as the run's own tokenizer
decodes it (samples.token_text, a JSON object id -> text). Reading the markers means only committed
samples count, as everywhere else. Stores written before token text was recorded give no text (None).
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from store.reader import KeyStore
from store.schema import model_label


def token_texts(ks: KeyStore, model: str) -> dict[int, str]:
    """Token id -> text for one model (every benchmark), from the committed samples' token_text."""
    label = model_label(model)
    out: dict[int, str] = {}
    for marker in ks.inventory.markers:
        pf = pq.ParquetFile(ks.fs.open_input_file(marker.path))
        if "token_text" not in pf.schema_arrow.names:
            continue
        table = pf.read(columns=["model", "token_text"])
        for m, text in zip(table["model"].to_pylist(), table["token_text"].to_pylist()):
            if m != label or not text:
                continue
            try:
                pairs = json.loads(text)
            except ValueError:
                continue
            for k, v in pairs.items():
                out.setdefault(int(k), str(v))
    return out
