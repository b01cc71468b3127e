"""Reading XLA's compiled HLO text: which collectives run, and which of them run inside a loop.

The text (``jitted.lower(...).compile().as_text()``) lists computations, each a header line
``[ENTRY ]%name (params) -> shape {`` at column 0, its instructions indented below and a
closing ``}``. An instruction is ``[ROOT ]%name = shape opcode(operands), attributes``; a
``while`` names its loop with ``condition=%c, body=%b``, and other instructions name the
computations they run with ``calls=``, ``to_apply=``, ``branch_computations={...}`` and the like.
A collective is "inside a loop" when it is an instruction of a while's body or condition, or of a
computation those call, transitively (a fusion, a nested while, a conditional's branch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COLLECTIVES = frozenset(
    {
        "all-reduce",
        "all-gather",
        "all-to-all",
        "ragged-all-to-all",
        "collective-permute",
        "collective-broadcast",
        "reduce-scatter",
    }
)
_HEADER = re.compile(r"^(?:ENTRY )?%?([^\s(]+) \(")
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%?([^\s=]+) = (.*)$")
_ONE_CALLEE = re.compile(r"\b(?:calls|to_apply|body|condition|true_computation|false_computation)=%?([^\s,{}]+)")
_CALLEE_SET = re.compile(r"\b(?:branch_computations|called_computations)=\{([^}]*)\}")


@dataclass(frozen=True)
class Instruction:
    name: str
    shape: str  # "f32[3,4]{1,0}" or a tuple "(f32[3]{0}, s32[])"
    opcode: str  # async collectives ("all-reduce-start") are reported by their collective's name
    line: str


def _split_shape(rest: str) -> tuple[str, str]:
    """``"(f32[2], s32[]) while(...)..."`` -> ``("(f32[2], s32[])", "while(...)...")``."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                return rest[: i + 1], rest[i + 1 :].lstrip()
    shape, _, tail = rest.partition(" ")
    return shape, tail


def parse(text: str) -> tuple[dict[str, list[Instruction]], str]:
    """The module's computations (name -> instructions) and the entry computation's name."""
    computations: dict[str, list[Instruction]] = {}
    entry, current = "", None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header and line.rstrip().endswith("{"):
            current = header.group(1)
            computations[current] = []
            if line.startswith("ENTRY"):
                entry = current
        elif line.startswith("}"):
            current = None
        elif current is not None and (match := _INSTRUCTION.match(line)):
            shape, tail = _split_shape(match.group(2))
            opcode = tail.partition("(")[0]
            for suffix in ("-start", "-done"):
                if opcode.endswith(suffix) and opcode[: -len(suffix)] in COLLECTIVES:
                    opcode = opcode[: -len(suffix)] if suffix == "-start" else "async-done"
            computations[current].append(Instruction(match.group(1), shape, opcode, line))
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text")
    return computations, entry


def _callees(instruction: Instruction) -> list[str]:
    names = _ONE_CALLEE.findall(instruction.line)
    for group in _CALLEE_SET.findall(instruction.line):
        names += [n.strip().lstrip("%") for n in group.split(",") if n.strip()]
    return names


def _closure(computations: dict[str, list[Instruction]], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for instruction in computations[name]:
            todo += _callees(instruction)
    return seen


@dataclass(frozen=True)
class Program:
    whiles: list[Instruction]  # every while instruction of the module
    in_loops: list[Instruction]  # collectives inside some while's body or condition
    outside: list[Instruction]  # collectives reached from the entry outside every loop


def collectives(text: str) -> Program:
    """Split the module's collectives into those inside a loop and those outside every loop."""
    computations, entry = parse(text)
    whiles = [i for body in computations.values() for i in body if i.opcode == "while"]
    loop_roots = [n for w in whiles for n in re.findall(r"\b(?:body|condition)=%?([^\s,{}]+)", w.line)]
    if len(loop_roots) != 2 * len(whiles):
        raise ValueError("a while instruction without its body= and condition=")
    in_loop = _closure(computations, loop_roots)
    everything = _closure(computations, [entry])

    def found(names: set[str]) -> list[Instruction]:
        return [i for n in sorted(names) for i in computations[n] if i.opcode in COLLECTIVES]

    return Program(whiles, found(in_loop), found(everything - in_loop))


def operand_shapes(instruction: Instruction) -> list[tuple[int, ...]]:
    """The array shapes an instruction produces (the leaves of a tuple shape), as dimension tuples."""
    return [tuple(int(d) for d in dims.split(",") if d) for dims in re.findall(r"\w+\[([\d,]*)\]", instruction.shape)]
