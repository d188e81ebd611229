"""keybroker: Python clients of keybrokerd (docs/protocol.md), standard library only.

    from keybroker import Client
    with Client() as kb:                    # $KEYBROKER_SOCKET, else the default socket
        dk = kb.datakey("aes")              # a fresh DEK and its blob
        assert kb.unwrap(dk.blob).plaintext == dk.plaintext

Client is the blocking client, AsyncClient the asyncio one; every error is a
KeybrokerError subclass named after its stable code (keybroker.errors).
"""
from .aio import AsyncClient
from .client import Client
from .errors import *  # noqa: F401,F403  (one class per code)
from .errors import BY_CODE, KeybrokerError
from .ops import DataKey, Rotated, Unwrapped, Wrapped
from .wire import default_socket

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "DataKey", "KeybrokerError", "Rotated", "Unwrapped", "Wrapped",
           "default_socket", "BY_CODE"] + [cls.__name__ for cls in BY_CODE.values()]
