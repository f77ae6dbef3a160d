"""Node permissions as xenstored keeps them.

A node's permissions are a list ``[owner+default, (domid, letter)...]``: the
first entry names the owner, who has full access, and its letter is the access
of every domain not listed.  Letters: n (none), r (read), w (write), b (both).
"""

from .errors import XsError

PERM_NONE = 0
PERM_READ = 1
PERM_WRITE = 2
PERM_OWNER = 4
PERM_ALL = PERM_READ | PERM_WRITE | PERM_OWNER

_LETTER_BITS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE,
                "b": PERM_READ | PERM_WRITE}
_BITS_LETTER = {v: k for k, v in _LETTER_BITS.items()}

DOMID_MAX = 0xFFFF


def parse_perm(text: str) -> tuple[int, int]:
    """``"r5"`` -> (5, PERM_READ); EINVAL on anything else."""
    if len(text) < 2 or text[0] not in _LETTER_BITS or not text[1:].isdigit():
        raise XsError("EINVAL", f"bad permission {text!r}")
    domid = int(text[1:])
    if domid > DOMID_MAX:
        raise XsError("EINVAL", f"bad domid in permission {text!r}")
    return domid, _LETTER_BITS[text[0]]


def parse_perms(texts) -> tuple:
    if not texts:
        raise XsError("EINVAL", "empty permission list")
    return tuple(parse_perm(t) for t in texts)


def perms_to_strings(perms) -> list[str]:
    return [f"{_BITS_LETTER[bits]}{domid}" for domid, bits in perms]


def perm_for_conn(conn, perms) -> int:
    """The access ``conn`` has to a node with ``perms`` (C's perm_for_conn).

    Privileged connections and the owner get everything; a domain given
    SET_TARGET over another acts as that domain too.
    """
    if conn.privileged:
        return PERM_ALL
    domid = conn.domid
    target = conn.target
    owner = perms[0][0]
    if owner == domid or owner == target:
        return PERM_ALL
    for pdomid, bits in perms[1:]:
        if pdomid == domid or pdomid == target:
            return bits
    return perms[0][1]
