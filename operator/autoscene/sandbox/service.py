"""What the sandbox's parts share: started by a `with` block, stopped when it ends."""

from types import TracebackType
from typing import Self


class Service:
    """`with Part(...) as part:` starts it and stops it when the block ends; a start that fails halfway
    stops what it had started before the error goes on."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
