"""The one exception type of the xl.cfg layer.

Every message is a single line that starts with ``FILE:LINE[:COL]:`` when a
position is known, as libxlutil reports them; the CLI prints it verbatim.
"""


class ConfigError(Exception):
    def __init__(self, message, source=None, line=None, column=None):
        self.bare = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self._format())

    def _format(self):
        where = []
        if self.source is not None:
            where.append(str(self.source))
            if self.line is not None:
                where.append(str(self.line))
                if self.column is not None:
                    where.append(str(self.column))
        return (":".join(where) + ": " if where else "") + self.bare
