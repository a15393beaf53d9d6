"""A layer streamed to a file is the same image content as one built in memory."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from devenv.images import Blob, LayerFile, build_image, built_image_file, sha256_digest


def test_a_layer_written_in_chunks_holds_the_same_tar_as_one_built_in_memory(
    tmp_path: Path,
) -> None:
    size = 2 * (1 << 20) + 12_345  # three chunks, the last one short
    in_memory = build_image(size_bytes=size, seed="same-seed")
    with built_image_file(size_bytes=size, seed="same-seed", directory=tmp_path) as streamed:
        [file_layer] = streamed.layers
        [memory_layer] = in_memory.layers
        assert isinstance(file_layer, LayerFile) and isinstance(memory_layer, Blob)
        unpacked = gzip.decompress(file_layer.path.read_bytes())
        assert unpacked == gzip.decompress(memory_layer.data)
        # The config names the same uncompressed layer (diff_id) and the manifest the file.
        assert streamed.config == in_memory.config
        manifest = json.loads(streamed.manifest)
        assert manifest["layers"][0]["digest"] == sha256_digest(file_layer.path.read_bytes())
        assert manifest["layers"][0]["size"] == file_layer.path.stat().st_size
        spooled = file_layer.path
    assert not spooled.exists()  # removed once pushed
