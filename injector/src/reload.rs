//! Reloading the serving certificate from disk: poll the files, wait for a
//! matching pair, swap the rustls configuration for new handshakes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum_server::tls_rustls::RustlsConfig;

use crate::metrics::{Metrics, ReloadLabels};
use crate::tls::{server_config, CertFiles, PemPair, TlsError};

/// What the reloader has seen of the files since the pair in use.
#[derive(Debug, Default)]
pub struct ReloadState {
    /// Since when the files have held something other than the pair in use
    /// that does not load.
    bad_since: Option<Instant>,
    /// The last bad content reported, so that one unchanged bad content is
    /// reported once, not at every poll. Cleared by any good reading: the
    /// same bad content coming back later is a new failure.
    reported: Option<Observed>,
}

/// One reading of the two files: their content, or why they could not be read.
pub type Observed = Result<PemPair, String>;

/// What to do after one reading.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<T> {
    /// Same as the pair in use.
    Unchanged,
    /// A new pair that loads: serve it.
    Load(T),
    /// Not (yet) a usable pair; a writer may be between the two files.
    Waiting(String),
    /// Still unusable after the settle time: report it (once).
    Failed(String),
}

impl ReloadState {
    /// Judges one reading. `load` turns a pair into something servable;
    /// it is called only for content that differs from `current`. A bad
    /// reading becomes a failure only once bad readings have lasted
    /// `settle`: a writer that replaces the certificate and then the key
    /// (or a reader that opened them on either side of a switch) shows a
    /// mismatched pair for a moment, which is not an error.
    pub fn judge<T>(
        &mut self,
        observed: Observed,
        current: &PemPair,
        now: Instant,
        settle: Duration,
        load: impl FnOnce(&PemPair) -> Result<T, TlsError>,
    ) -> Verdict<T> {
        let error = match &observed {
            Ok(pair) if pair == current => {
                self.bad_since = None;
                self.reported = None;
                return Verdict::Unchanged;
            }
            Ok(pair) => match load(pair) {
                Ok(loaded) => {
                    self.bad_since = None;
                    self.reported = None;
                    return Verdict::Load(loaded);
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.clone(),
        };
        let since = *self.bad_since.get_or_insert(now);
        if now.duration_since(since) < settle {
            return Verdict::Waiting(error);
        }
        if self.reported.as_ref() == Some(&observed) {
            return Verdict::Waiting(error);
        }
        self.reported = Some(observed);
        Verdict::Failed(error)
    }
}

/// How long bad readings may last before they count as a failure: a few
/// polls, at least a second.
pub fn settle_time(interval: Duration) -> Duration {
    (interval * 5).max(Duration::from_secs(1))
}

/// Polls the files and swaps the served configuration when their content
/// changes. New handshakes get the new certificate; connections already
/// open keep theirs, so no in-flight request is dropped. A bad pair keeps
/// the old configuration; it is reported only when it outlasts
/// [`settle_time`] (see [`ReloadState::judge`]).
pub fn spawn_reloader(
    files: CertFiles,
    rustls: RustlsConfig,
    metrics: Arc<Metrics>,
    loaded: PemPair,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = loaded;
        let mut state = ReloadState::default();
        let settle = settle_time(interval);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let reader = files.clone();
            let observed = match tokio::task::spawn_blocking(move || reader.read()).await {
                Ok(read) => read.map_err(|e| e.to_string()),
                Err(_) => continue,
            };
            let pair = observed.as_ref().ok().cloned();
            let verdict = state.judge(observed, &current, Instant::now(), settle, |p| {
                server_config(&p.0, &p.1)
            });
            match verdict {
                Verdict::Unchanged => {}
                Verdict::Load((config, not_after)) => {
                    rustls.reload_from_config(config);
                    metrics.cert_expiry.set(not_after as f64);
                    metrics
                        .cert_reloads
                        .get_or_create(&ReloadLabels { result: "success" })
                        .inc();
                    tracing::info!(not_after, "serving certificate reloaded");
                    current = pair.unwrap_or_default();
                }
                Verdict::Waiting(error) => {
                    tracing::debug!(%error, "certificate files not usable yet; waiting for a matching pair")
                }
                Verdict::Failed(error) => {
                    metrics
                        .cert_reloads
                        .get_or_create(&ReloadLabels { result: "failure" })
                        .inc();
                    tracing::error!(%error, ?settle, "certificate files unusable; still serving the previous pair");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pair_is_a_failure_only_once_it_settles() {
        let settle = Duration::from_secs(1);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let current: PemPair = (b"cert-a".to_vec(), b"key-a".to_vec());
        let half: PemPair = (b"cert-b".to_vec(), b"key-a".to_vec());
        let whole: PemPair = (b"cert-b".to_vec(), b"key-b".to_vec());
        // Loads only the matching new pair.
        let load = |p: &PemPair| {
            if p.0.ends_with(b"b") && p.1.ends_with(b"b") {
                Ok("b")
            } else {
                Err(TlsError::NoCertificate)
            }
        };
        let mut st = ReloadState::default();
        assert_eq!(
            st.judge(Ok(current.clone()), &current, ms(0), settle, load),
            Verdict::Unchanged
        );
        // The certificate is new, the key not yet: wait.
        assert!(matches!(
            st.judge(Ok(half.clone()), &current, ms(10), settle, load),
            Verdict::Waiting(_)
        ));
        assert!(matches!(
            st.judge(Ok(half.clone()), &current, ms(500), settle, load),
            Verdict::Waiting(_)
        ));
        // Then the key: loaded, nothing reported.
        assert_eq!(
            st.judge(Ok(whole.clone()), &current, ms(600), settle, load),
            Verdict::Load("b")
        );
        // A mismatch that lasts is reported once, then waited on.
        let mut st = ReloadState::default();
        assert!(matches!(
            st.judge(Ok(half.clone()), &current, ms(0), settle, load),
            Verdict::Waiting(_)
        ));
        assert!(matches!(
            st.judge(Ok(half.clone()), &current, ms(1000), settle, load),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            st.judge(Ok(half.clone()), &current, ms(2000), settle, load),
            Verdict::Waiting(_)
        ));
        // Another bad content, or an unreadable file, is reported in turn;
        // the settle time runs from the first bad reading.
        assert!(matches!(
            st.judge(Err("gone".into()), &current, ms(2100), settle, load),
            Verdict::Failed(_)
        ));
        // Back to the pair in use: nothing to do, and the clock restarts.
        assert_eq!(
            st.judge(Ok(current.clone()), &current, ms(2200), settle, load),
            Verdict::Unchanged
        );
        assert!(matches!(
            st.judge(Err("gone".into()), &current, ms(2300), settle, load),
            Verdict::Waiting(_)
        ));
        // The same bad content, once it lasts again, is a new failure.
        assert!(matches!(
            st.judge(Err("gone".into()), &current, ms(3300), settle, load),
            Verdict::Failed(_)
        ));
        assert_eq!(
            settle_time(Duration::from_millis(200)),
            Duration::from_secs(1)
        );
        assert_eq!(settle_time(Duration::from_secs(5)), Duration::from_secs(25));
    }
}
