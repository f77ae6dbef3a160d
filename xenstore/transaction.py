"""A transaction as C xenstored keeps it.

It records the generation of every node it touches (read or written) the
first time it touches it, keeps its own writes private, and at commit fails
with EAGAIN only if one of those recorded nodes changed meanwhile.  A node
that did not exist is recorded as NO_GENERATION, so a node created outside
also conflicts; a parent's child list is part of the parent, so adding a
child to a parent the transaction read conflicts too.
"""

NO_GENERATION = -1


class Transaction:
    __slots__ = ("id", "conn", "accessed", "changes", "events", "nodedelta")

    def __init__(self, txid: int, conn):
        self.id = txid
        self.conn = conn
        self.accessed: dict[str, int] = {}      # path -> generation first seen
        self.changes: dict = {}                 # path -> Node, or None if removed
        self.events: list = []                  # watch firings deferred to commit
        self.nodedelta: dict[int, int] = {}     # owner domid -> node count change
