//! How the ring reader waits: the state machine behind `Tracer::next_batch`,
//! as a pure function so that every transition is tested without a kernel.
//!
//! While events flow the reader is never woken by the kernel (a wakeup is a
//! cross-CPU interrupt per event, see `submit_record()` in
//! `bpf/lifecycle/ring.h`): it looks at the ring on a timer. Once enough
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
mod tests;
