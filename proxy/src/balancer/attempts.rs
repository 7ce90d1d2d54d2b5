//! The attempt loop every module shares: pick a node, count the request on it, try it, and decide from
//! what happened whether to send it again, move on to another node, or answer.
//!
//! The decision is [`decide`], a pure function; [`run`] is its only caller. What a try *is* (a pooled
//! connection, a lane, a bare connect) belongs to the module, behind [`Attempt`]. README's section on
//! errors gives the same table for users.
//!
//! New cases come in as new [`Event`]s or inputs to [`decide`]: a lane closed because its oldest reply is
//! overdue (unsent requests move on, written ones are answered), or a node whose other connections still
//! answer. Masking ([`Decision::mask`]) is apart from what happens to the request ([`Then`]), so a failure
//! can be answered without masking its node.

use std::fmt::Display;

use super::{Balancer, InFlight, Node};

/// Most times a request is sent again to the same node after a kept connection (or a lane) closed, or
/// the backend turned it away, before it read any of it. Each such resend costs a round trip and nothing
/// else; the bound is there for a backend that keeps doing it.
pub const UNSENT_RESENDS: u8 = 16;

/// Most times a request that may be resent (`GET`, `HEAD`, RFC 9110 section 9.2.2) is sent again after
/// its connection closed with it possibly written and unanswered.
pub const UNANSWERED_RESENDS: u8 = 2;

/// What became of one try of a request at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Connecting failed: nothing was sent.
    Refused,
    /// The connection closed, or the backend turned the request away, before it read any of it.
    Unsent,
    /// The request may have been written; its connection closed before any reply.
    Unanswered,
    /// The backend failed after the request went out: a malformed reply, a broken connection.
    Failed,
    /// No reply within the module's `timeout`.
    TimedOut,
    /// The client failed (its body broke off or was too large): not the node's fault.
    ClientFailed,
    /// Every connection the module may open to the node is full: the node is busy, not failing.
    Busy,
}

/// How often the current request has been sent again to the same node, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resends {
    /// After [`Event::Unsent`].
    pub unsent: u8,
    /// After [`Event::Unanswered`].
    pub unanswered: u8,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Send the request again to the same node, on another connection.
    Resend,
    /// Try another node that has not been tried.
    NextNode,
    /// Answer the client with this try's error.
    Answer,
}

/// The decision after a try that did not get a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the node is skipped for `fail_timeout`.
    pub mask: bool,
    /// What happens to the request.
    pub then: Then,
}

/// Decides what follows a try that got no reply.
///
/// - Connecting failed: mask the node, try another (nothing was sent).
/// - A *kept* connection closed, or the backend turned the request away, before reading it: send it again
///   to the same node, at most [`UNSENT_RESENDS`] times; past that, or on a fresh connection, the node is
///   masked and another tried (still nothing was sent).
///   A clean close (FIN) seen *before* the write counts here: the pool checks each kept connection
///   without blocking before it is used, and one the backend closed is dropped for a new one. A FIN
///   seen only *after* the write proves nothing (the backend may have read the request and acted on
///   it), so it is [`Event::Unanswered`], never `Unsent`; only a reset before any reply byte is, since a
///   backend resets only a connection whose received bytes it never read.
/// - Possibly written, then the connection closed: a request that `may_resend` is sent again at most
///   [`UNANSWERED_RESENDS`] times; otherwise the node is masked and the client answered, since the
///   backend may have acted on it.
/// - A failure after sending: mask the node and answer.
/// - A timeout: answer; mask the node unless it `answered` other requests meanwhile (one slow method does
///   not make a node that serves the rest unhealthy).
/// - The client's own failure, or a node too busy to take more: answer; the node is not masked.
pub fn decide(event: Event, reused: bool, may_resend: bool, resends: Resends, answered: bool) -> Decision {
    let (mask, then) = match event {
        Event::TimedOut if answered => (false, Then::Answer),
        Event::Refused => (true, Then::NextNode),
        Event::Unsent if reused && resends.unsent < UNSENT_RESENDS => (false, Then::Resend),
        Event::Unsent => (true, Then::NextNode),
        Event::Unanswered if may_resend && resends.unanswered < UNANSWERED_RESENDS => (false, Then::Resend),
        Event::Unanswered | Event::Failed | Event::TimedOut => (true, Then::Answer),
        Event::ClientFailed | Event::Busy => (false, Then::Answer),
    };
    Decision { mask, then }
}

/// A try that got no reply: what happened, on what kind of connection, and the error to report.
#[derive(Debug)]
pub struct Miss<E> {
    /// What happened.
    pub event: Event,
    /// Whether the connection had carried requests before (a lane always counts as kept).
    pub reused: bool,
    /// What went wrong, for the log line or the client's answer.
    pub error: E,
}

impl<E> Miss<E> {
    /// A miss on a connection that `reused`.
    pub fn new(event: Event, reused: bool, error: E) -> Self {
        Miss { event, reused, error }
    }
}

/// One module's way of trying a request at a node.
#[allow(async_fn_in_trait)] // Each module's future is checked for `Send` where the module uses it.
pub trait Attempt {
    /// What a try that got a reply yields.
    type Answer;
    /// What a try that did not yields.
    type Error: Display;

    /// Tries the request at node `index` once; `resend` is true when the same node is tried again.
    async fn attempt(&mut self, index: usize, node: &Node, resend: bool) -> Result<Self::Answer, Miss<Self::Error>>;

    /// What log lines call this kind of request's nodes' connections: `""` or, say, `"stream "`.
    const KIND: &'static str = "";

    /// Node `index` was just masked: drop what is kept for it (idle connections are suspect).
    fn masked(&mut self, index: usize) {
        let _ = index;
    }
}

/// A reply, from node `index`; `in_flight` counts the request on it until dropped.
#[derive(Debug)]
pub struct Answered<T> {
    /// What the try yielded.
    pub answer: T,
    /// The node that answered.
    pub index: usize,
    /// The request's count on that node (for `least_conn`).
    pub in_flight: InFlight,
}

/// Why a request got no reply.
#[derive(Debug)]
pub enum Unanswered<E> {
    /// Node `index` failed in a way that ends the request.
    Failed {
        /// The error the client is answered with.
        error: E,
        /// The node.
        index: usize,
        /// The resends made, for the message.
        resends: Resends,
    },
    /// Every node was tried and none took the request; the nodes, in the order tried.
    NoNode(Vec<usize>),
}

/// Tries `request` at nodes the balancer picks until one answers, the decision says to answer, or every
/// node was tried. `may_resend`: whether the request may go out twice; `module` names it in log lines.
pub async fn run<A: Attempt>(
    balancer: &Balancer,
    module: &str,
    may_resend: bool,
    request: &mut A,
) -> Result<Answered<A::Answer>, Unanswered<A::Error>> {
    let mut tried = Vec::with_capacity(balancer.node_count());
    let mut resends = Resends::default();
    while let Some(pick) = balancer.pick(&tried) {
        let node = balancer.node(pick.index);
        if pick.all_masked {
            let kind = A::KIND;
            tracing::warn!(
                module,
                node = &**node.name(),
                "every {kind}node is masked; trying a masked one"
            );
        }
        tried.push(pick.index);
        // Counted from the pick, so requests arriving together see each other (least_conn).
        let in_flight = balancer.track(pick.index);
        let mut resend = false;
        loop {
            let started = balancer.answers(pick.index);
            let miss = match request.attempt(pick.index, &node, resend).await {
                Ok(answer) => {
                    balancer.answered(pick);
                    return Ok(Answered {
                        answer,
                        index: pick.index,
                        in_flight,
                    });
                }
                Err(miss) => miss,
            };
            let answered = balancer.answers(pick.index) != started;
            let decision = decide(miss.event, miss.reused, may_resend, resends, answered);
            if decision.mask {
                balancer.mark_failed(pick.index);
                request.masked(pick.index);
            }
            let (name, error) = (&**node.name(), &miss.error);
            match decision.then {
                Then::Resend => {
                    if miss.event == Event::Unsent {
                        resends.unsent += 1;
                    } else {
                        resends.unanswered += 1;
                    }
                    tracing::debug!(module, node = name, %error, event = ?miss.event, "sending the request again");
                    resend = true;
                }
                Then::NextNode if miss.event == Event::Refused => {
                    let kind = A::KIND;
                    tracing::warn!(module, node = name, %error, "{kind}connect failed; node masked");
                    break;
                }
                Then::NextNode => {
                    tracing::warn!(module, node = name, %error, "connections closed before the request was read; node masked");
                    break;
                }
                Then::Answer => {
                    return Err(Unanswered::Failed {
                        error: miss.error,
                        index: pick.index,
                        resends,
                    })
                }
            }
        }
    }
    Err(Unanswered::NoNode(tried))
}

/// The names of the nodes `tried`, for an error message.
pub fn describe(balancer: &Balancer, tried: &[usize]) -> String {
    let names: Vec<_> = tried.iter().map(|&i| balancer.node(i).name().clone()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Resends = Resends {
        unsent: 0,
        unanswered: 0,
    };

    fn d(mask: bool, then: Then) -> Decision {
        Decision { mask, then }
    }

    #[test]
    fn a_refused_connect_masks_and_moves_on_whatever_else_holds() {
        for (reused, may_resend) in [(false, false), (true, true)] {
            assert_eq!(
                decide(Event::Refused, reused, may_resend, NONE, false),
                d(true, Then::NextNode)
            );
        }
    }

    #[test]
    fn unsent_on_a_kept_connection_is_resent_up_to_its_bound_then_moves_on() {
        let mut resends = NONE;
        for _ in 0..UNSENT_RESENDS {
            assert_eq!(
                decide(Event::Unsent, true, false, resends, false),
                d(false, Then::Resend)
            );
            resends.unsent += 1;
        }
        assert_eq!(
            decide(Event::Unsent, true, false, resends, false),
            d(true, Then::NextNode)
        );
        assert_eq!(
            decide(Event::Unsent, false, true, NONE, false),
            d(true, Then::NextNode),
            "a fresh connection"
        );
    }

    #[test]
    fn unanswered_is_resent_only_when_the_request_may_be_and_twice_at_most() {
        assert_eq!(
            decide(Event::Unanswered, true, false, NONE, false),
            d(true, Then::Answer)
        );
        let mut resends = NONE;
        for _ in 0..UNANSWERED_RESENDS {
            assert_eq!(
                decide(Event::Unanswered, true, true, resends, false),
                d(false, Then::Resend)
            );
            resends.unanswered += 1;
        }
        assert_eq!(
            decide(Event::Unanswered, true, true, resends, false),
            d(true, Then::Answer)
        );
        // The bounds are counted apart: spent unsent resends leave the unanswered ones.
        let spent = Resends {
            unsent: UNSENT_RESENDS,
            unanswered: 0,
        };
        assert_eq!(
            decide(Event::Unanswered, true, true, spent, false),
            d(false, Then::Resend)
        );
    }

    #[test]
    fn failures_after_sending_mask_and_answer_and_the_clients_own_do_not_mask() {
        for event in [Event::Failed, Event::TimedOut] {
            assert_eq!(decide(event, true, true, NONE, false), d(true, Then::Answer));
        }
        assert_eq!(
            decide(Event::ClientFailed, false, true, NONE, false),
            d(false, Then::Answer)
        );
    }

    #[test]
    fn a_timeout_does_not_mask_a_node_that_answered_others_meanwhile() {
        assert_eq!(decide(Event::TimedOut, true, false, NONE, true), d(false, Then::Answer));
        assert_eq!(decide(Event::TimedOut, true, false, NONE, false), d(true, Then::Answer));
        // Only a timeout: a broken reply masks whatever else the node did.
        assert_eq!(decide(Event::Failed, true, false, NONE, true), d(true, Then::Answer));
        assert_eq!(decide(Event::Busy, true, false, NONE, false), d(false, Then::Answer));
    }
}
