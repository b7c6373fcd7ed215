//! Scheduler: applies rollout plans' moves when they are due. One per node,
//! under the Supervisor. It sleeps until the earliest active plan is due, as
//! the store says, and at most `POLL`, so a plan made on another node is
//! seen within that; a plan made or controlled on this node wakes it at
//! once. The store claims each move (`store/plans.rs`), so the schedulers
//! of several nodes never apply a step twice, and when the node that
//! applied the last step is gone, another applies the next when it is due.
//! A restart loses nothing: plans and their progress live in the store.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use tokio::sync::Notify;

use crate::names::ActorName;
use futures_util::future::BoxFuture;

/// The longest the scheduler sleeps without looking at the store.
pub const POLL: Duration = Duration::from_secs(2);
/// After a failure to read or apply, how soon it tries again.
pub const RETRY: Duration = Duration::from_secs(1);

/// What the Scheduler takes.
#[derive(Debug)]
pub enum SchedulerMsg {
    /// Look for due plans now.
    Wake,
}

/// What the Scheduler drives: the rollout plans (`service/plans.rs`), which
/// know how to apply their moves; the Scheduler only knows when to ask.
pub trait DueMoves: Send + Sync + 'static {
    /// Applies every move that is due; answers how long to sleep before
    /// looking again (at most `POLL`; `RETRY` after a failure).
    fn apply_due(&self) -> BoxFuture<'_, Duration>;
}

/// What the Scheduler is started with, again after a crash.
#[derive(Clone)]
pub struct SchedulerArgs {
    /// Plans and their moves.
    pub moves: Arc<dyn DueMoves>,
    /// Notified when a plan is made or controlled on this node.
    pub wake: Arc<Notify>,
}

/// The Scheduler's state: its arguments and its timers.
pub struct SchedulerState {
    args: SchedulerArgs,
    timer: Option<tokio::task::JoinHandle<Result<(), MessagingErr<SchedulerMsg>>>>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

/// Wakes for due rollout plans.
pub struct Scheduler;

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SchedulerArgs,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        let wake = args.wake.clone();
        let me = myself.clone();
        let listener = tokio::spawn(async move {
            loop {
                wake.notified().await;
                if me.cast(SchedulerMsg::Wake).is_err() {
                    return;
                }
            }
        });
        myself.cast(SchedulerMsg::Wake)?;
        Ok(SchedulerState {
            args,
            timer: None,
            listener: Some(listener),
        })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut SchedulerState) -> Result<(), ActorProcessingErr> {
        if let Some(listener) = state.listener.take() {
            listener.abort();
        }
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        _wake: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        let started = std::time::Instant::now();
        let wait = state.args.moves.apply_due().await;
        crate::metrics::handled(ActorName::Scheduler, started);
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.timer = Some(myself.send_after(wait, || SchedulerMsg::Wake));
        Ok(())
    }
}
