//! Polling with a deadline: the only way tests wait for something. No fixed sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `poll` until it returns `Some`, and returns that value. Panics with
/// "timed out after Xs waiting for WHAT" when `deadline` passes first.
///
/// Polls quickly at first (most waits here end within milliseconds) and backs off to 100 ms
/// so a long wait does not hammer the server under test.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, poll: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_every(deadline, Duration::from_millis(100), what, poll).await
}

/// `wait_until` backing off to `max_interval` instead of 100 ms: for polls that cost the
/// machine something (a CLI run over a big journal) while the system under test is busy.
pub async fn wait_until_every<T, F, Fut>(
    deadline: Duration,
    max_interval: Duration,
    what: &str,
    mut poll: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_every_saying(deadline, max_interval, what, || {
        let polled = poll();
        async move { polled.await.ok_or_else(String::new) }
    })
    .await
}

/// `wait_until_every` whose poll says, while it is not done yet, what it still waits for
/// (`Err(why)`); a timeout panics with the last `why`.
pub async fn wait_until_every_saying<T, F, Fut>(
    deadline: Duration,
    max_interval: Duration,
    what: &str,
    mut poll: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut interval = Duration::from_millis(10).min(max_interval);
    loop {
        let why = match poll().await {
            Ok(value) => return value,
            Err(why) => why,
        };
        if started.elapsed() >= deadline {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!("; still waiting for:\n{why}")
            };
            panic!(
                "timed out after {:.1}s waiting for {what}{why}",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(max_interval);
    }
}
