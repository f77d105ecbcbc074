"""The server's half of Cognito's `USER_SRP_AUTH`: SRP-6a as Amazon Cognito speaks it.

cognito-local answers `USER_SRP_AUTH` with "unsupported feature", and it is what Amplify and
amazon-cognito-identity-js use unless told otherwise. Cognito's variant of SRP-6a (the client
side is in amazon-cognito-identity-js's AuthenticationHelper and Amplify's srp/ folder):

- the 3072-bit group of RFC 5054 / RFC 3526, g = 2, SHA-256, k = H(N | PAD(g));
- numbers travel as hex; hashes are over the bytes of "padded" hex (a leading 00 when the top
  bit is set, so the value reads as positive);
- x = H(PAD(salt) | H(poolName + userIdForSrp + ":" + password)), poolName being the part of
  the pool id after "_";
- the key is HKDF-SHA256 of PAD(S) with salt PAD(u) and info "Caldera Derived Key", 16 bytes;
- the client proves it by HMAC-SHA256(key, poolName | userIdForSrp | secretBlock | timestamp),
  base64, with the timestamp as "Tue Sep 5 09:05:07 UTC 2023" (the day not zero-padded).

No maintained Python library serves this side: `srp` (pysrp) implements RFC 5054's proof
(M1 = H(H(N) xor H(g) | ...)) and its own x, and pycognito / warrant only the client. The
arithmetic is a few modular powers, so it lives here, and the tests check it against clients
nobody here wrote (amazon-cognito-identity-js, Amplify v6).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

N_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E34"
    "04DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6"
    "F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A6916"
    "3FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C"
    "32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA95"
    "6AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA7157"
    "5D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D876"
    "02733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E"
    "4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
N = int(N_HEX, 16)
G = 2
INFO = b"Caldera Derived Key"
# What a signature's TIMESTAMP looks like; Cognito refuses "Sep 05" and a wrong weekday.
TIMESTAMP_FORMAT = "%a %b {day} %H:%M:%S UTC %Y"


def pad_hex(value: int) -> str:
    """`value` in hex as Cognito hashes it: even length, and read as positive (a leading 00)."""
    text = format(value, "x")
    if len(text) % 2:
        text = "0" + text
    elif text[0] in "89abcdef":
        text = "00" + text
    return text


def hex_hash(hex_text: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_text)).hexdigest()


K = int(hex_hash(pad_hex(N) + pad_hex(G)), 16)


def pool_name(user_pool_id: str) -> str:
    return user_pool_id.partition("_")[2]


def private_value(salt_hex: str, pool: str, user_id: str, password: str) -> int:
    """x: what the client derives from the password (and the server here, from the same)."""
    secret = hashlib.sha256(f"{pool}{user_id}:{password}".encode()).hexdigest()
    return int(hex_hash(pad_hex(int(salt_hex, 16)) + secret), 16)


def timestamp(when: datetime) -> str:
    """A TIMESTAMP as the clients write it (English names, UTC, day without a leading zero)."""
    when = when.astimezone(UTC)
    return when.strftime(TIMESTAMP_FORMAT.replace("{day}", str(when.day)))


def is_canonical_timestamp(text: str) -> bool:
    try:
        parsed = datetime.strptime(text, "%a %b %d %H:%M:%S UTC %Y").replace(tzinfo=UTC)
    except ValueError:
        return False
    return timestamp(parsed) == text


@dataclass(frozen=True)
class Challenge:
    """One PASSWORD_VERIFIER challenge: what the client is sent and what the server keeps."""

    user_pool_id: str
    user_id: str  # USER_ID_FOR_SRP: the user's user name in the pool
    salt_hex: str
    secret_block: str  # base64, opaque to the client
    a: int
    b: int  # the server's private ephemeral
    big_b: int
    verifier: int

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "SALT": self.salt_hex,
            "SECRET_BLOCK": self.secret_block,
            "SRP_B": format(self.big_b, "x"),
            "USERNAME": self.user_id,
            "USER_ID_FOR_SRP": self.user_id,
        }


class BadSrpA(ValueError):
    """SRP_A is not a hex number, or is 0 modulo N (which would make the key guessable)."""


def start(user_pool_id: str, user_id: str, password: str, srp_a: str) -> Challenge:
    """The server's answer to `InitiateAuth(USER_SRP_AUTH, SRP_A=...)` for a known password."""
    try:
        a = int(srp_a, 16)
    except ValueError:
        raise BadSrpA("SRP_A is not a hexadecimal number") from None
    if a <= 0 or a % N == 0:
        raise BadSrpA("SRP_A is not a positive number other than 0 modulo N")
    salt_hex = secrets.token_hex(16)
    verifier = pow(G, private_value(salt_hex, pool_name(user_pool_id), user_id, password), N)
    while True:
        b = secrets.randbelow(N - 2) + 2
        big_b = (K * verifier + pow(G, b, N)) % N
        if big_b:
            break
    block = base64.b64encode(secrets.token_bytes(64)).decode()
    return Challenge(user_pool_id, user_id, salt_hex, block, a, b, big_b, verifier)


def expected_signature(challenge: Challenge, when: str) -> str:
    """The PASSWORD_CLAIM_SIGNATURE a client that knows the password sends at `when`."""
    u = int(hex_hash(pad_hex(challenge.a) + pad_hex(challenge.big_b)), 16)
    s = pow(challenge.a * pow(challenge.verifier, u, N), challenge.b, N)
    prk = hmac.digest(bytes.fromhex(pad_hex(u)), bytes.fromhex(pad_hex(s)), "sha256")
    key = hmac.digest(prk, INFO + b"\x01", "sha256")[:16]
    message = (
        pool_name(challenge.user_pool_id).encode()
        + challenge.user_id.encode()
        + base64.b64decode(challenge.secret_block)
        + when.encode()
    )
    return base64.b64encode(hmac.digest(key, message, "sha256")).decode()


def verify(challenge: Challenge, signature: str, when: str) -> bool:
    """True when `signature` proves the password (compared in constant time)."""
    if not is_canonical_timestamp(when):
        return False
    return hmac.compare_digest(expected_signature(challenge, when).encode(), signature.encode())
