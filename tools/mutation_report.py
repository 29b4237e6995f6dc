"""Kill rate per mutated file and in total, from `mutmut results --all true` on stdin.

    mutmut results --all true | python tools/mutation_report.py

mutmut names each mutant after its module and function (`core.money.x_parse_amount__
mutmut_7: killed`); the module gives the file. A timeout counts as killed (the tests
noticed: the mutant never finished); every other status that is not a kill, including
"no tests" (no selected test reaches the function), counts against the rate.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

DETECTED = frozenset({"killed", "timeout", "caught by type check"})
LINE = re.compile(r"^\s*(?P<module>[\w.]+?)\.x[ǁ_][^:]*__mutmut_\d+: (?P<status>.+?)\s*$")


@dataclass(frozen=True, slots=True)
class FileRate:
    path: str
    statuses: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def killed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status in DETECTED)

    @property
    def rate(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 0.0

    def line(self) -> str:
        rest = ", ".join(
            f"{n} {status}" for status, n in sorted(self.statuses.items())
            if status not in DETECTED
        )
        return (
            f"{self.path:<22} {self.killed:>5}/{self.total:<5} {self.rate:6.1f}%"
            + (f"   not killed: {rest}" if rest else "")
        )


def rates(lines: list[str]) -> list[FileRate]:
    by_file: dict[str, Counter[str]] = defaultdict(Counter)
    for text in lines:
        found = LINE.match(text)
        if found:
            path = found["module"].replace(".", "/") + ".py"
            by_file[path][found["status"]] += 1
    return [FileRate(path, statuses) for path, statuses in sorted(by_file.items())]


def main() -> int:
    files = rates(sys.stdin.read().splitlines())
    if not files:
        print("mutation report: no results (run `mutmut run` first)", file=sys.stderr)
        return 1
    print(f"{'file':<22} {'killed/total':>11}   rate")
    for item in files:
        print(item.line())
    everything: Counter[str] = Counter()
    for item in files:
        everything.update(item.statuses)
    print(FileRate("total", everything).line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
