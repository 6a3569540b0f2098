//! Where the lines go: buffered stdout, which may go away.

use std::io::{self, StdoutLock};

use crate::output::{Format, Line, LostLine, Writer};
use crate::run::RunError;

/// Once stdout is gone nothing more is written; the first error surfaces
/// at the next flush.
pub(super) struct Sink {
    out: Writer<StdoutLock<'static>>,
    error: Option<io::Error>,
    /// Event lines written (`lost` lines aside), for the summary.
    written: u64,
}

impl Sink {
    pub(super) fn stdout(format: Format) -> Self {
        Sink {
            out: Writer::new(io::stdout().lock(), format),
            error: None,
            written: 0,
        }
    }

    pub(super) fn line(&mut self, line: &Line<'_>) {
        if self.error.is_none() {
            match self.out.write(line) {
                Ok(()) => self.written += 1,
                Err(e) => self.error = Some(e),
            }
        }
    }

    pub(super) fn lost(&mut self, line: &LostLine<'_>) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_lost(line) {
                self.error = Some(e);
            }
        }
    }

    pub(super) fn written(&self) -> u64 {
        self.written
    }

    pub(super) fn flush(&mut self) -> Result<(), RunError> {
        if let Some(e) = self.error.take() {
            return Err(RunError::Output(e));
        }
        self.out.flush().map_err(RunError::Output)
    }
}
