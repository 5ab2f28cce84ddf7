"""Object storage shared by the trainer, the operator and adapter sync: URIs, layout, manifests, progress."""

from .layout import RunLayout, VersionLayout, job_prefix, run_id
from .manifest import MANIFEST_FILE, AdapterManifest, FileEntry, ManifestError, read_manifest, verify_files
from .progress import PROGRESS_FILE, RunProgress, read_progress
from .uris import filesystem, join

__all__ = [
    "MANIFEST_FILE",
    "PROGRESS_FILE",
    "AdapterManifest",
    "FileEntry",
    "ManifestError",
    "RunLayout",
    "RunProgress",
    "VersionLayout",
    "filesystem",
    "job_prefix",
    "join",
    "read_manifest",
    "read_progress",
    "run_id",
    "verify_files",
]
