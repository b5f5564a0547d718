"""Key registries for tests: real key pairs (``matchd keygen``'s writer) in a
temporary directory and a registry file that lists some of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from daemon.auth import write_keypair
from ipc.client_common import CurveKeys, read_key_file


@dataclass(frozen=True)
class Entry:
    """One ``[[client]]`` table: ``users`` is a list, ``"*"`` or None (left out)."""

    role: str
    users: list[int] | str | None = None
    rate_per_s: int | None = None
    burst: int | None = None


@dataclass
class Keys:
    """Key pairs in ``directory``: ``server`` and every client written so far."""

    directory: Path
    clients: dict[str, Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        write_keypair(self.directory, "server")

    def add(self, name: str, entry: Entry | None = None) -> None:
        """A key pair for ``name``; listed in the registry when ``entry`` is given."""
        write_keypair(self.directory, name)
        if entry is not None:
            self.clients[name] = entry

    def public(self, name: str) -> str:
        return read_key_file(self.directory / f"{name}.key")[0].decode()

    def curve(self, name: str) -> CurveKeys:
        """The keys client ``name`` connects with."""
        return CurveKeys.from_files(
            self.directory / f"{name}.key_secret", self.directory / "server.key"
        )

    def registry_text(self) -> str:
        lines = ['[server]\nsecret_key_file = "server.key_secret"\n']
        for name, e in self.clients.items():
            lines.append(f'[[client]]\nname = "{name}"\nrole = "{e.role}"')
            lines.append(f'public_key = "{self.public(name)}"')
            if e.users is not None:
                lines.append(
                    f'users = "{e.users}"' if isinstance(e.users, str) else f"users = {e.users}"
                )
            if e.rate_per_s is not None:
                lines.append(f"rate_per_s = {e.rate_per_s}")
            if e.burst is not None:
                lines.append(f"burst = {e.burst}")
            lines.append("")
        return "\n".join(lines)

    def write_registry(self) -> Path:
        """The registry file, ``directory/keys.toml``."""
        path = self.directory / "keys.toml"
        path.write_text(self.registry_text(), encoding="utf-8")
        return path
