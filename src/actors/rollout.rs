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

use super::names::ActorName;
use super::plans::PlansHandle;
use crate::domain::model::now_millis;
use crate::domain::rollout::PlanState;
use crate::reports::ReportsHandle;

/// The longest the scheduler sleeps without looking at the store.
pub const POLL: Duration = Duration::from_secs(2);
/// After a failure to read or apply, how soon it tries again.
const RETRY: Duration = Duration::from_secs(1);

/// What the Scheduler takes.
#[derive(Debug)]
pub enum SchedulerMsg {
    /// Look for due plans now.
    Wake,
}

/// What the Scheduler is started with, again after a crash.
#[derive(Clone)]
pub struct SchedulerArgs {
    /// Plans and their moves.
    pub plans: PlansHandle,
    /// The health signal each bake is judged by.
    pub reports: ReportsHandle,
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
        let wait = state.run().await;
        crate::metrics::handled(ActorName::Scheduler, started);
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.timer = Some(myself.send_after(wait, || SchedulerMsg::Wake));
        Ok(())
    }
}

impl SchedulerState {
    /// Applies what is due and says how long to sleep.
    async fn run(&mut self) -> Duration {
        let SchedulerArgs { plans, reports, .. } = &self.args;
        match plans.advance_due(reports).await {
            Ok(moved) => {
                for plan in &moved {
                    tracing::info!(
                        plan = plan.id,
                        config_id = plan.config_id,
                        state = plan.state.as_str(),
                        applied = plan.applied,
                        of = plan.steps.len(),
                        "rollout plan moved"
                    );
                    crate::metrics::plan_moved(plan.state.as_str());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "rollout plans not advanced; trying again");
                return RETRY;
            }
        }
        if let Ok(open) = plans.list(None).await {
            let active = open.iter().filter(|p| p.state == PlanState::Active).count();
            crate::metrics::open_plans(active, open.len() - active);
        }
        match plans.next_due().await {
            Ok(Some(at)) => Duration::from_millis((at - now_millis()).clamp(0, POLL.as_millis() as i64) as u64),
            Ok(None) => POLL,
            Err(error) => {
                tracing::warn!(%error, "could not read when the next rollout step is due");
                RETRY
            }
        }
    }
}
