"""The probe's features on disk: safetensors for the tensor (never a pickle), JSON beside it for each gap's facts."""
import json

from safetensors.torch import load_file, save_file


def save(path, x, meta):
    save_file({"x": x}, path)
    with open(path + ".meta.json", "w") as fh:
        json.dump(meta, fh)


def load(path):
    with open(path + ".meta.json") as fh:
        return {"x": load_file(path)["x"], "meta": json.load(fh)}
