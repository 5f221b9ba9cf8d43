//! Asking the caller's rules (`AdmissionRules`, `OpeningRules`) from inside a write transaction.
//!
//! A write runs on the blocking pool, in a closure that must own everything it uses, while the
//! rules are borrowed by the caller. So the transaction sends each question (a closure over the
//! rows it read) to the caller's task, which answers it with the rules and sends the answer back;
//! the transaction waits for it, holding the database still, and writes what was decided. The
//! rules decide; the transaction only reads and writes around them.

use std::future::Future;
use std::sync::mpsc as answers;

use concert_application::ports::RepositoryError;
use tokio::sync::mpsc;

/// One question for the rules, with the way its answer goes back.
type Question<R> = Box<dyn FnOnce(&R) + Send>;

/// The transaction's side: asks the rules and waits for the answer.
pub(super) struct Asker<R: ?Sized + 'static> {
    questions: mpsc::UnboundedSender<Question<R>>,
}

impl<R: ?Sized + 'static> Asker<R> {
    /// What `rules` answer to `question`. An error only when the caller is gone (its request was
    /// dropped): the transaction then rolls back.
    pub(super) fn ask<T, F>(&self, question: F) -> Result<T, RepositoryError>
    where
        T: Send + 'static,
        F: FnOnce(&R) -> T + Send + 'static,
    {
        let (answer, answered) = answers::sync_channel(1);
        self.questions
            .send(Box::new(move |rules: &R| {
                // The transaction waits for this answer; if it is gone, nobody needs it.
                let _ = answer.send(question(rules));
            }))
            .map_err(|_| caller_gone())?;
        answered.recv().map_err(|_| caller_gone())
    }
}

fn caller_gone() -> RepositoryError {
    RepositoryError::Unexpected("the caller stopped waiting for the rules' answer".into())
}

/// Runs the work `start` makes (a store write given an [`Asker`]) to completion, answering its
/// questions with `rules` on this task meanwhile.
pub(super) async fn consulting<R, T, W, F>(rules: &R, start: F) -> T
where
    R: ?Sized + Sync + 'static,
    W: Future<Output = T>,
    F: FnOnce(Asker<R>) -> W,
{
    let (questions, mut asked) = mpsc::unbounded_channel::<Question<R>>();
    let work = start(Asker { questions });
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            // Disabled once the work dropped its asker (the transaction ended).
            Some(question) = asked.recv() => question(rules),
            done = &mut work => return done,
        }
    }
}
