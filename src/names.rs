//! The actors' names, in one place: the supervisor, the metrics (labels and
//! mailbox counts), the stats route and so the dashboard all take them from
//! here. A leaf: it imports nothing.

/// A long-lived actor of the tree (Connections are many and unnamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorName {
    /// Configs and versions in memory.
    ConfigCache,
    /// The sandbox workers.
    EvaluatorPool,
    /// The WebSocket subscriptions.
    PushRegistry,
    /// Change notices between nodes.
    ChangeBus,
    /// Rollout plans' moves, when due.
    Scheduler,
}

impl ActorName {
    /// The Supervisor's children, in the order the dashboard shows them.
    pub const ALL: [Self; 5] = [
        Self::ConfigCache,
        Self::EvaluatorPool,
        Self::PushRegistry,
        Self::ChangeBus,
        Self::Scheduler,
    ];

    /// As metrics label it and errors name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigCache => "config cache",
            Self::EvaluatorPool => "evaluator pool",
            Self::PushRegistry => "push registry",
            Self::ChangeBus => "change bus",
            Self::Scheduler => "rollout scheduler",
        }
    }

    /// Whether the actor counts what it takes from its mailbox (ractor
    /// exposes no queue length), so sends to it are counted too. The pool is
    /// a factory with its own queue counters; the Scheduler only wakes itself.
    pub fn counts_mailbox(self) -> bool {
        !matches!(self, Self::EvaluatorPool | Self::Scheduler)
    }

    /// Its place in `ALL`, for arrays indexed by actor.
    pub fn index(self) -> usize {
        self as usize
    }
}
