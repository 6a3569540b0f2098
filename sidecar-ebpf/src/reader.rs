//! How the ring reader waits: the state machine behind `Tracer::next_batch`,
//! as a pure function so that every transition is tested without a kernel.
//!
//! While events flow the reader is never woken by the kernel (a wakeup is a
//! cross-CPU interrupt per event, see `submit_record()` in
//! `bpf/lifecycle/common.h`): it looks at the ring on a timer. Once enough
//! looks in a row find nothing, it sets a flag in the `reader_state` map that
//! asks the kernel for a wakeup, looks once more (a record committed before
//! the kernel saw the flag woke no one) and, if that finds nothing either,
//! stops the timer and blocks on the ring's descriptor.

/// After this many looks in a row find the ring empty, the reader blocks
/// until the kernel wakes it: an idle pod costs no timer wakeups.
pub(crate) const EMPTY_POLLS_BEFORE_SLEEP: u32 = 20;

/// Where the reader is between two looks at the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Look at the next tick of the poll timer; this many looks in a row
    /// found nothing.
    Polling { empty: u32 },
    /// Look again at once: the last look took a full drain's worth, or the
    /// kernel just woke the reader.
    Behind,
    /// The wakeup flag is set: one more look, at once, decides whether to
    /// block.
    Arming,
    /// Blocked on the ring's descriptor, the timer stopped; the kernel wakes
    /// the reader.
    Asleep,
}

/// How the driver waits before it feeds the next [`Input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The poll timer's next tick, then a look.
    Tick,
    /// No wait: a look at once.
    Nothing,
    /// The ring's descriptor becomes readable; then [`Input::Woken`].
    Wakeup,
}

/// What a look at the ring found, by the number of records it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Empty,
    /// Some records, fewer than one drain may take.
    Some,
    /// A full drain's worth: more may be waiting.
    Full,
}

impl Found {
    pub(crate) fn of(consumed: usize, max_per_drain: usize) -> Found {
        match consumed {
            0 => Found::Empty,
            n if n >= max_per_drain => Found::Full,
            _ => Found::Some,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// A look at the ring, which handed what it took to the sink.
    Looked(Found),
    /// The wait for the descriptor ended.
    Woken,
    /// The [`Effect::Arm`] just asked for could not be carried out.
    FlagRefused,
}

/// What the driver does on a transition, before it waits again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// Set the wakeup flag, then a full fence before the next look, as the
    /// kernel orders its commit before reading the flag. If the flag cannot
    /// be set, feed [`Input::FlagRefused`].
    Arm,
    /// Clear the wakeup flag: records came after all, keep polling.
    Disarm,
    /// Stop the poll timer before blocking.
    Sleep,
    /// Clear the wakeup flag and start the poll timer again.
    Wake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) next: State,
    pub(crate) effect: Effect,
    /// Records went to the sink: `next_batch` returns so that the caller
    /// writes them out.
    pub(crate) end_batch: bool,
}

impl State {
    pub(crate) fn wait(self) -> Wait {
        match self {
            State::Polling { .. } => Wait::Tick,
            State::Behind | State::Arming => Wait::Nothing,
            State::Asleep => Wait::Wakeup,
        }
    }
}

/// The reader's next state, what to do on the way, and whether the batch
/// ends. Total: the combinations the driver never produces (marked below)
/// still lead somewhere safe, that is never to a blocked reader that has
/// records or a stopped timer.
pub(crate) fn step(state: State, input: Input) -> Step {
    let to = |next, effect, end_batch| Step {
        next,
        effect,
        end_batch,
    };
    match (state, input) {
        // Records: hand them to the caller, keep polling (Full: at once).
        (State::Polling { .. } | State::Behind, Input::Looked(Found::Some)) => {
            to(State::Polling { empty: 0 }, Effect::None, true)
        }
        (State::Polling { .. } | State::Behind, Input::Looked(Found::Full)) => {
            to(State::Behind, Effect::None, true)
        }
        (State::Polling { empty }, Input::Looked(Found::Empty))
            if empty + 1 < EMPTY_POLLS_BEFORE_SLEEP =>
        {
            to(State::Polling { empty: empty + 1 }, Effect::None, false)
        }
        // Quiet for long enough, or nothing left after a wakeup or a full
        // drain: ask for a wakeup and look once more.
        (State::Polling { .. } | State::Behind, Input::Looked(Found::Empty)) => {
            to(State::Arming, Effect::Arm, false)
        }
        (State::Arming, Input::Looked(Found::Empty)) => to(State::Asleep, Effect::Sleep, false),
        // Records arrived while the flag went up: they are in the sink, so
        // the batch ends here, or nothing would flush them until the next
        // wakeup, which an idle pod may never send.
        (State::Arming, Input::Looked(Found::Some)) => {
            to(State::Polling { empty: 0 }, Effect::Disarm, true)
        }
        (State::Arming, Input::Looked(Found::Full)) => to(State::Behind, Effect::Disarm, true),
        // Without the flag no wakeup would come: keep polling.
        (State::Arming, Input::FlagRefused) => to(State::Polling { empty: 0 }, Effect::None, false),
        // Whatever woke the reader, records or not, it looks and polls again.
        (State::Asleep, Input::Woken) => to(State::Behind, Effect::Wake, false),

        // Not produced by the driver.
        (State::Asleep, Input::Looked(Found::Empty)) => to(State::Asleep, Effect::None, false),
        (State::Asleep, Input::Looked(Found::Some)) => {
            to(State::Polling { empty: 0 }, Effect::Wake, true)
        }
        (State::Asleep, Input::Looked(Found::Full)) => to(State::Behind, Effect::Wake, true),
        (State::Asleep, Input::FlagRefused) => to(State::Behind, Effect::Wake, false),
        (State::Polling { .. } | State::Behind | State::Arming, Input::Woken) => {
            to(State::Behind, Effect::Wake, false)
        }
        (State::Polling { .. } | State::Behind, Input::FlagRefused) => {
            to(state, Effect::None, false)
        }
    }
}

#[cfg(test)]
mod tests {
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
}
