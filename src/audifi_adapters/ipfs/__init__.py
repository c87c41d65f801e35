"""IPFS content stores: local directory (dev), Kubo RPC, Pinata; and the UnixFS CID builder.

Every adapter implements :class:`audifi_core.content.ContentStore` and gives the CID
``ipfs add --cid-version=1`` gives for the same bytes.
"""

from .kubo import KuboContentStore
from .local import LocalContentStore
from .pinata import PinataContentStore
from .unixfs import CHUNK_SIZE, MAX_LINKS, UnixFsBuilder, cid_of_bytes

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "KuboContentStore",
    "LocalContentStore",
    "PinataContentStore",
    "UnixFsBuilder",
    "cid_of_bytes",
]
