"""A local GCS emulator for the tests: ``python tests/gcs_emulator.py PORT BUCKET``.

gcp-storage-emulator, with one fix: real GCS sends each object's generation in the
``x-goog-generation`` header of a media download, and tensorstore (orbax's storage layer) reads
it there to make its conditional writes of OCDBT manifests; the emulator leaves it out, which
tensorstore reports as "Malformed StorageGeneration". The header is added here.
"""

import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def _download_with_generation(request, response, storage, *args, **kwargs):
    _download(request, response, storage, *args, **kwargs)
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except Exception:  # noqa: BLE001 - not found: the 404 is already set
        return
    response["x-goog-generation"] = obj["generation"]
    response["x-goog-metageneration"] = obj["metageneration"]


objects.download = _download_with_generation

if __name__ == "__main__":
    from gcp_storage_emulator.server import create_server  # after the patch: it routes to it

    create_server("127.0.0.1", int(sys.argv[1]), in_memory=True,
                  default_bucket=sys.argv[2]).run()
