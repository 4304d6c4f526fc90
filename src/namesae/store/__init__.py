"""The embedding store: rows of (embedding, name, prompt, kind[, seed, image]) in one embedding space.

Format (DESIGN.md): datasets `embeddings` [N, d] float16/float32, `name`, `prompt`, `kind` (utf-8 strings),
optional `seed` (int64, -1 for text rows) and `image` (path relative to the store's folder); root attributes
`format_version` (1), `space`, `dim`, `normalized`. Any extra dataset or attribute is allowed and preserved.

On disk a store is the HDF5 file at its path (the *base*, in exactly that layout) plus, while rows are being
appended, a folder beside it, `<file>.segments/`:

    image.h5                     the base: written whole, to a temporary file that is fsynced and renamed
    image.h5.segments/
      manifest.json              the committed segments, in row order; replaced atomically (temp, fsync, rename)
      seg-000003-1f2e3d4c.h5     one append (or several merged): a complete little store of the same layout
      writer.lock                the writer's pid; `fcntl.flock`ed by the one process allowed to write

Appends never touch committed bytes: each is written to a temporary segment file, fsynced, renamed, and only then
listed in a new manifest, which is the commit. A SIGKILL at any moment leaves either the old manifest or the new
one; files no manifest lists are removed by the next writer. Segments of one size class are merged (tiered, so
segments stay few and each row is rewritten O(log N) times), and closing a writer whose segments hold at least as
many rows as the base folds everything into a new base, renamed over the old one (the manifest names the base it
extends by a random id, so a manifest left stale by a fold is recognised and ignored). A finished job therefore
leaves a single file in the DESIGN.md layout; a killed one leaves the base plus its committed segments.

Checks: files namesae writes use the HDF5 1.10 format (checksummed superblock, object headers and chunk indexes),
fletcher32 on every numeric chunk, and a sha256 per string field (the global heap that holds
variable-length strings has no checksum of its own) in the root attribute `namesae_digests`; the manifest carries
its own sha256. Rows of a store marked normalized must have unit norm (within NORM_TOL) at append and on read.
Any mismatch is a StoreError naming the file. Stores written by other tools (no `rows_committed`, no digests) are
read in full with whatever checks their files carry; legacy namesae files keep `rows_committed`, and rows past it
are ignored. A legacy base is rewritten once, atomically, in the current layout before its first new segment.

Readers take no lock: they open the base, the manifest and every listed segment, and retry if a writer replaced
something in between, so they see a consistent committed snapshot while a writer appends.
"""

from namesae.store.core import EmbeddingStore
from namesae.store.files import (
    COMMITTED,
    DIGESTS,
    DTYPES,
    FORMAT_VERSION,
    KINDS,
    NORM_TOL,
    OPTIONAL_FIELDS,
    STORE_ID,
    STRING_FIELDS,
    StoreBusyError,
)
from namesae.store.segments import MANIFEST, TIER, segments_dir
from namesae.store.whole import merge_stores, write_store

__all__ = ["COMMITTED", "DIGESTS", "DTYPES", "FORMAT_VERSION", "KINDS", "MANIFEST", "NORM_TOL", "OPTIONAL_FIELDS",
           "STORE_ID", "STRING_FIELDS", "TIER", "EmbeddingStore", "StoreBusyError", "merge_stores", "segments_dir",
           "write_store"]
