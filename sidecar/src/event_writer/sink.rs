//! Where the lines go: buffered stdout, which may go away.

use std::io::{self, StdoutLock};

use crate::output::{Format, Line, LostLine, Writer};
use crate::run::RunError;

/// Once stdout is gone nothing more is written; the first error surfaces
/// at the next flush.
pub(super) struct Sink {
    out: Writer<StdoutLock<'static>>,
    error: Option<io::Error>,
    /// Event lines (`lost` lines aside) that reached stdout, as far as a
    /// successful flush says, for the summary.
    written: u64,
    /// Event lines in the buffer since the last flush.
    buffered: u64,
    /// Event lines that never reached stdout: those buffered when it broke,
    /// and every one after.
    unwritten: u64,
}

impl Sink {
    pub(super) fn stdout(format: Format) -> Self {
        Sink {
            out: Writer::new(io::stdout().lock(), format),
            error: None,
            written: 0,
            buffered: 0,
            unwritten: 0,
        }
    }

    pub(super) fn line(&mut self, line: &Line<'_>) {
        if self.error.is_none() {
            match self.out.write(line) {
                Ok(()) => self.buffered += 1,
                Err(e) => self.broken(e),
            }
        }
        if self.error.is_some() {
            self.unwritten += 1;
        }
    }

    pub(super) fn lost(&mut self, line: &LostLine<'_>) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_lost(line) {
                self.broken(e);
            }
        }
    }

    pub(super) fn written(&self) -> u64 {
        self.written
    }

    pub(super) fn unwritten(&self) -> u64 {
        self.unwritten
    }

    /// What was buffered counts as lost; the writer stops.
    fn broken(&mut self, e: io::Error) {
        self.unwritten += self.buffered;
        self.buffered = 0;
        self.error = Some(e);
    }

    pub(super) fn flush(&mut self) -> Result<(), RunError> {
        if let Some(e) = self.error.take() {
            // Said once; the sink stays shut.
            self.error = Some(io::Error::new(e.kind(), "stdout is gone"));
            return Err(RunError::Output(e));
        }
        match self.out.flush() {
            Ok(()) => {
                self.written += std::mem::take(&mut self.buffered);
                Ok(())
            }
            Err(e) => {
                let err = RunError::Output(io::Error::new(e.kind(), e.to_string()));
                self.broken(e);
                Err(err)
            }
        }
    }
}
