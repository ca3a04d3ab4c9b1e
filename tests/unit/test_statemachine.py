"""The transition-table type every state machine is written with."""

import enum

import pytest

from sipxcc.statemachine import InvalidTransition, Table, Transition, mermaid


class Light(enum.Enum):
    OFF = enum.auto()
    ON = enum.auto()
    BROKEN = enum.auto()


class Press(enum.Enum):
    SWITCH = enum.auto()
    HAMMER = enum.auto()


TABLE = Table(
    "light", Light.OFF,
    {(Light.OFF, Press.SWITCH): Transition(Light.ON, "glow"),
     (Light.ON, Press.SWITCH): Transition(Light.OFF),
     (Light.ON, Press.HAMMER): Transition(Light.BROKEN, "shatter")},
    ignores=[(Light.BROKEN, Press.SWITCH)],
    final=[Light.BROKEN],
)


def test_a_listed_pair_names_its_target_and_action():
    assert TABLE.step(Light.OFF, Press.SWITCH) == Transition(Light.ON, "glow")
    assert TABLE.step(Light.ON, Press.SWITCH) == Transition(Light.OFF, None)


def test_an_ignored_pair_does_nothing_and_any_other_is_refused():
    assert TABLE.step(Light.BROKEN, Press.SWITCH) is None
    with pytest.raises(InvalidTransition, match="light: HAMMER is not allowed in OFF"):
        TABLE.step(Light.OFF, Press.HAMMER)
    assert TABLE.allows(Light.BROKEN, Press.SWITCH)
    assert not TABLE.allows(Light.BROKEN, Press.HAMMER)


def test_a_pair_cannot_be_both_a_transition_and_ignored():
    with pytest.raises(ValueError, match="both a transition and ignored"):
        Table("bad", Light.OFF, {(Light.OFF, Press.SWITCH): Transition(Light.ON)},
              ignores=[(Light.OFF, Press.SWITCH)])


def test_the_picture_lists_every_transition_in_a_stable_order():
    assert mermaid(TABLE) == (
        "stateDiagram-v2\n"
        "    [*] --> OFF\n"
        "    OFF --> ON: SWITCH / glow\n"
        "    ON --> BROKEN: HAMMER / shatter\n"
        "    ON --> OFF: SWITCH\n"
        "    BROKEN --> [*]\n"
    )


def test_bind_looks_each_action_up_once_and_refuses_a_missing_one():
    from sipxcc.statemachine import bind

    class Lamp:
        def glow(self, _=None):
            return "glow"

    with pytest.raises(TypeError, match="Lamp has no action 'shatter'"):
        bind(TABLE, Lamp)

    class Fragile(Lamp):
        def shatter(self, _=None):
            return "shatter"

    bound = bind(TABLE, Fragile)
    assert bound[(Light.OFF, Press.SWITCH)] == (Light.ON, Fragile.glow)
    assert bound[(Light.ON, Press.SWITCH)] == (Light.OFF, None)
    assert (Light.BROKEN, Press.SWITCH) not in bound  # an ignored pair: Table.step says so
