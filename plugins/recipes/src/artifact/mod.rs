//! Artifacts: download, verification, cache and unpacking.
