"""Bearer tokens: HS256 JWTs signed with ``JWT_SECRET``, checked strictly.

The algorithm is pinned to HS256 on both sides, so a token that says
``alg: none`` or names another algorithm (the key-confusion attacks) is
refused whatever it claims. Issuer, audience, expiry and not-before are
required and checked, with ``LEEWAY`` seconds for clocks that differ a
little between nodes. Beyond the signature, a token names its user and the
user's ``stamp`` (see ``users.py``); the caller checks those against the
users file, which is what makes a password change revoke tokens.

Nodes also call each other's API (a cluster-wide workers view): they send a
short-lived ``peer`` token made with the same secret, which names a node,
not a user.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from .users import Role

ALGORITHM = "HS256"
ISSUER = "jobtrio"
AUDIENCE = "jobtrio-api"
#: Seconds of clock difference tolerated on exp and nbf.
LEEWAY = 10.0
#: Lifetime of a token one node sends another.
PEER_TOKEN_TTL = 60.0
REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "sub", "role"]


class TokenError(ValueError):
    """The token is not valid; the message says why in words safe to send back."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    role: Role
    stamp: str | None
    expires_at: float
    peer: bool = False


class Tokens:
    def __init__(self, secret: str, ttl: float) -> None:
        self._key = secret.encode()
        self.ttl = ttl

    def issue(self, user: str, role: Role, stamp: str, now: float) -> tuple[str, float]:
        """A token for ``user`` and when it expires."""
        expires = now + self.ttl
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user,
            "role": str(role),
            "stp": stamp,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(expires),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), float(int(expires))

    def issue_peer(self, node_id: str, now: float) -> str:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"node:{node_id}",
            "role": str(Role.ADMIN),
            "peer": True,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + PEER_TOKEN_TTL),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, now: float) -> Claims:
        try:
            data = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired; log in again") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token is from another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError(f"the token is not signed with {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token lacks the {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not valid") from None
        except jwt.InvalidTokenError:
            raise TokenError("the token is not a valid JWT") from None
        # pyjwt checks exp against its own clock; ours may be simulated or skewed on purpose
        exp = data["exp"]
        if not isinstance(exp, int | float) or now > exp + LEEWAY:
            raise TokenError("the token has expired; log in again")
        try:
            role = Role(data["role"])
        except ValueError:
            raise TokenError("the token names no known role") from None
        subject, stamp = data["sub"], data.get("stp")
        if not isinstance(subject, str) or (stamp is not None and not isinstance(stamp, str)):
            raise TokenError("the token is not a valid JWT")
        peer = data.get("peer") is True
        if not peer and stamp is None:
            raise TokenError("the token lacks the stp claim")
        return Claims(subject, role, stamp, float(exp), peer)
