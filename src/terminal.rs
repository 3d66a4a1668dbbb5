//! The terminal, shared by the PIN prompt and `clone`'s console.
//!
//! While a PIN prompt is open, nothing else of mkclone's writes to the terminal. The SO PIN
//! of a PKCS#11 source is asked during `clone`'s phase 3c, while other targets' phases run
//! on other threads: their action lines were written under the question, and the progress
//! bar, redrawn, erased the line the question was on (the person at the terminal saw no
//! question, or a question with a bar across it). Now the console writes each line, and
//! each failure, under [`exclusive`]; the prompt asks under [`prompting`], which holds the
//! same lock for the whole question and first has the console clear its bar ([`set_hide`];
//! drawn again after the answer). The other threads' output waits, then comes in order.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Hides what the console drew (its progress bar) while the function it is given runs,
/// and draws it again after.
pub type Hide = dyn Fn(&mut dyn FnMut()) + Send + Sync;

/// One writer at a time: a console line, or a whole prompt.
static WRITER: Mutex<()> = Mutex::new(());

/// The console's [`Hide`], while it has a bar drawn.
static HIDE: Mutex<Option<Arc<Hide>>> = Mutex::new(None);

fn writer() -> MutexGuard<'static, ()> {
    WRITER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Write to the terminal with no prompt open: `write` runs once any open prompt is
/// answered, and no prompt opens while it runs.
pub fn exclusive<R>(write: impl FnOnce() -> R) -> R {
    let _one = writer();
    write()
}

/// Run a prompt: no other [`exclusive`] writer writes until it returns, and the console's
/// bar, if one is drawn, is cleared first and drawn again after.
pub fn prompting<R>(prompt: impl FnOnce() -> R) -> R {
    let _one = writer();
    let hide = HIDE.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut prompt = Some(prompt);
    let mut answer = None;
    if let Some(hide) = hide {
        hide(&mut || answer = prompt.take().map(|p| p()));
    }
    match (answer, prompt) {
        (Some(answer), _) => answer,
        // No console, or one whose hide did not run the prompt: asked as it is.
        (None, Some(prompt)) => prompt(),
        // Taken, the prompt ran and its answer was set; a panic in it does not return here.
        (None, None) => unreachable!("a PIN prompt ran and left no answer"),
    }
}

/// Set (or with `None`, take away) what clears the console's bar during a prompt.
pub fn set_hide(hide: Option<Arc<Hide>>) {
    *HIDE.lock().unwrap_or_else(PoisonError::into_inner) = hide;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A console line waits for an open prompt, which runs inside the console's hide.
    #[test]
    fn a_line_waits_for_the_prompt_which_runs_with_the_bar_hidden() {
        let (events, seen) = mpsc::channel::<&'static str>();
        let hide_events = events.clone();
        set_hide(Some(Arc::new(move |f: &mut dyn FnMut()| {
            hide_events.send("bar cleared").unwrap();
            f();
            hide_events.send("bar drawn").unwrap();
        })));
        let (asked, ask) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let prompt_events = events.clone();
            s.spawn(move || {
                let pin = prompting(|| {
                    prompt_events.send("question").unwrap();
                    asked.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    prompt_events.send("answer").unwrap();
                    "1234"
                });
                assert_eq!(pin, "1234");
            });
            ask.recv().unwrap();
            let line_events = events.clone();
            s.spawn(move || exclusive(|| line_events.send("line").unwrap()));
        });
        set_hide(None);
        drop(events);
        let order: Vec<_> = seen.iter().collect();
        assert_eq!(
            order,
            ["bar cleared", "question", "answer", "bar drawn", "line"]
        );
        // With no console, a prompt is asked as it is.
        assert_eq!(prompting(|| 5), 5);
    }
}
