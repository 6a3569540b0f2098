use super::*;

const LAST_POLL: u32 = EMPTY_POLLS_BEFORE_SLEEP - 1;

fn looked(found: Found) -> Input {
    Input::Looked(found)
}

fn expect(next: State, effect: Effect, end_batch: bool) -> Step {
    Step {
        next,
        effect,
        end_batch,
    }
}

#[test]
fn found_by_the_number_of_records() {
    assert_eq!(Found::of(0, 100), Found::Empty);
    assert_eq!(Found::of(1, 100), Found::Some);
    assert_eq!(Found::of(99, 100), Found::Some);
    assert_eq!(Found::of(100, 100), Found::Full);
}

#[test]
fn each_state_waits_its_way() {
    assert_eq!(State::Polling { empty: 3 }.wait(), Wait::Tick);
    assert_eq!(State::Behind.wait(), Wait::Nothing);
    assert_eq!(State::Arming.wait(), Wait::Nothing);
    assert_eq!(State::Asleep.wait(), Wait::Wakeup);
}

#[test]
fn polling_counts_empty_looks() {
    for empty in [0, 1, LAST_POLL - 1] {
        assert_eq!(
            step(State::Polling { empty }, looked(Found::Empty)),
            expect(State::Polling { empty: empty + 1 }, Effect::None, false)
        );
    }
}

#[test]
fn polling_arms_after_the_last_empty_look() {
    assert_eq!(
        step(State::Polling { empty: LAST_POLL }, looked(Found::Empty)),
        expect(State::Arming, Effect::Arm, false)
    );
}

#[test]
fn records_end_the_batch_and_reset_the_count() {
    for state in [
        State::Polling { empty: 0 },
        State::Polling { empty: LAST_POLL },
        State::Behind,
    ] {
        assert_eq!(
            step(state, looked(Found::Some)),
            expect(State::Polling { empty: 0 }, Effect::None, true),
            "{state:?}"
        );
        assert_eq!(
            step(state, looked(Found::Full)),
            expect(State::Behind, Effect::None, true),
            "{state:?}"
        );
    }
}

#[test]
fn behind_arms_when_the_ring_is_empty() {
    assert_eq!(
        step(State::Behind, looked(Found::Empty)),
        expect(State::Arming, Effect::Arm, false)
    );
}

#[test]
fn arming_with_an_empty_ring_sleeps() {
    assert_eq!(
        step(State::Arming, looked(Found::Empty)),
        expect(State::Asleep, Effect::Sleep, false)
    );
}

#[test]
fn records_found_while_arming_end_the_batch() {
    assert_eq!(
        step(State::Arming, looked(Found::Some)),
        expect(State::Polling { empty: 0 }, Effect::Disarm, true)
    );
    assert_eq!(
        step(State::Arming, looked(Found::Full)),
        expect(State::Behind, Effect::Disarm, true)
    );
}

#[test]
fn a_refused_flag_keeps_polling() {
    assert_eq!(
        step(State::Arming, Input::FlagRefused),
        expect(State::Polling { empty: 0 }, Effect::None, false)
    );
}

#[test]
fn a_wakeup_looks_at_once_and_polls_again() {
    assert_eq!(
        step(State::Asleep, Input::Woken),
        expect(State::Behind, Effect::Wake, false)
    );
}

#[test]
fn inputs_the_driver_never_sends_lead_somewhere_safe() {
    assert_eq!(
        step(State::Asleep, looked(Found::Empty)),
        expect(State::Asleep, Effect::None, false)
    );
    assert_eq!(
        step(State::Asleep, looked(Found::Some)),
        expect(State::Polling { empty: 0 }, Effect::Wake, true)
    );
    assert_eq!(
        step(State::Asleep, looked(Found::Full)),
        expect(State::Behind, Effect::Wake, true)
    );
    assert_eq!(
        step(State::Asleep, Input::FlagRefused),
        expect(State::Behind, Effect::Wake, false)
    );
    for state in [State::Polling { empty: 2 }, State::Behind, State::Arming] {
        assert_eq!(
            step(state, Input::Woken),
            expect(State::Behind, Effect::Wake, false),
            "{state:?}"
        );
    }
    for state in [State::Polling { empty: 2 }, State::Behind] {
        assert_eq!(
            step(state, Input::FlagRefused),
            expect(state, Effect::None, false),
            "{state:?}"
        );
    }
}

const STATES: [State; 5] = [
    State::Polling { empty: 0 },
    State::Polling { empty: LAST_POLL },
    State::Behind,
    State::Arming,
    State::Asleep,
];
const INPUTS: [Input; 5] = [
    Input::Looked(Found::Empty),
    Input::Looked(Found::Some),
    Input::Looked(Found::Full),
    Input::Woken,
    Input::FlagRefused,
];

/// Over every state and input: records always end the batch, the flag
/// goes up on the way into Arming, a reader blocks only from Arming with
/// its timer stopped, and one that leaves Asleep restarts its timer.
#[test]
fn invariants_hold_for_every_state_and_input() {
    for state in STATES {
        for input in INPUTS {
            let s = step(state, input);
            let why = format!("{state:?} + {input:?} -> {s:?}");
            if matches!(input, Input::Looked(Found::Some | Found::Full)) {
                assert!(s.end_batch, "{why}");
            } else {
                assert!(!s.end_batch, "{why}");
            }
            if s.next == State::Arming {
                assert_eq!(s.effect, Effect::Arm, "{why}");
            }
            if s.next == State::Asleep && state != State::Asleep {
                assert_eq!((state, s.effect), (State::Arming, Effect::Sleep), "{why}");
            }
            if state == State::Asleep && s.next != State::Asleep {
                assert_eq!(s.effect, Effect::Wake, "{why}");
            }
        }
    }
}

/// With the ring always empty, a reader never spins: from any state it
/// takes at most two looks before it waits on the timer or the
/// descriptor.
#[test]
fn an_empty_ring_never_makes_the_reader_spin() {
    for start in STATES {
        let mut state = start;
        let mut looks = 0;
        for _ in 0..10 {
            let input = match state.wait() {
                Wait::Wakeup => Input::Woken,
                Wait::Tick | Wait::Nothing => looked(Found::Empty),
            };
            if matches!(input, Input::Looked(_)) {
                looks += 1;
            }
            state = step(state, input).next;
            if state.wait() != Wait::Nothing {
                break;
            }
        }
        assert_ne!(state.wait(), Wait::Nothing, "{start:?} spins");
        assert!(looks <= 2, "{start:?}: {looks} looks");
    }
}
