//! Who may read what over OFREP: client tokens from `[ofrep]`, each scoped to
//! config-id patterns, and the derived tickets their event streams are
//! opened with (a browser's EventSource cannot send a header, so the
//! stream's address carries the ticket, never the token).

use std::sync::{Arc, Mutex, RwLock};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::domain::ofrep::Scope;
use crate::http::auth::bearer;
use crate::secrets;
use crate::settings::Ofrep;
use crate::sync::{Locked, RwLocked};

/// One client token, ready to check.
pub struct Client {
    /// Who holds it, for logs.
    pub name: String,
    token: String,
    /// The configs it may read.
    pub scope: Scope,
    /// What its event stream's address carries.
    pub ticket: String,
    /// The ids it covers, with the list they were picked from: the same
    /// list gives the same ids without matching every id again.
    covered: Mutex<Option<Covered>>,
}

/// A list of ids, and those of them a client covers.
type Covered = (Arc<[String]>, Arc<[String]>);

impl Client {
    /// The ids in `all` this client may read, in `all`'s order.
    pub fn covered(&self, all: &Arc<[String]>) -> Arc<[String]> {
        let mut covered = self.covered.locked();
        match &*covered {
            Some((from, ids)) if Arc::ptr_eq(from, all) => ids.clone(),
            _ => {
                let ids: Arc<[String]> = all.iter().filter(|id| self.scope.covers(id)).cloned().collect();
                *covered = Some((all.clone(), ids.clone()));
                ids
            }
        }
    }
}

/// `[ofrep]` as the routes use it.
pub struct OfrepAccess {
    clients: Vec<Client>,
    /// Single evaluation needs a secret or a token.
    pub require_credentials: bool,
    /// The most configs one bulk evaluation answers.
    pub max_bulk_flags: usize,
    /// Where clients reach Vane, for the event stream's address; empty:
    /// taken from the request.
    pub public_url: String,
    /// Sent with the event stream's address.
    pub inactivity_delay_s: u64,
}

impl OfrepAccess {
    /// From validated settings.
    pub fn new(settings: &Ofrep) -> Self {
        let clients = settings
            .client_tokens
            .iter()
            .map(|t| Client {
                name: t.name.clone(),
                token: t.token.clone(),
                // Validated with the settings; a pattern that is not reads nothing.
                scope: Scope::new(&t.configs).unwrap_or_default(),
                ticket: ticket(&t.token),
                covered: Mutex::default(),
            })
            .collect();
        Self {
            clients,
            require_credentials: settings.require_credentials,
            max_bulk_flags: settings.max_bulk_flags,
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            inactivity_delay_s: settings.inactivity_delay_s,
        }
    }

    /// The client whose token was presented; every token is compared, so
    /// timing tells nothing.
    pub fn client(&self, presented: &str) -> Option<&Client> {
        self.find(|c| secrets::equal(&c.token, presented))
    }

    /// The client whose event stream ticket this is.
    pub fn by_ticket(&self, ticket: &str) -> Option<&Client> {
        self.find(|c| secrets::equal(&c.ticket, ticket))
    }

    fn find(&self, matches: impl Fn(&Client) -> bool) -> Option<&Client> {
        self.clients
            .iter()
            .fold(None, |found, c| if matches(c) { Some(c) } else { found })
    }
}

/// `[ofrep]` as it is now: a settings reload replaces it, and tells the
/// open event streams, so a stream whose token was removed ends.
pub struct LiveAccess {
    current: RwLock<Arc<OfrepAccess>>,
    changed: watch::Sender<()>,
}

impl LiveAccess {
    /// From validated settings.
    pub fn new(settings: &Ofrep) -> Self {
        Self {
            current: RwLock::new(Arc::new(OfrepAccess::new(settings))),
            changed: watch::channel(()).0,
        }
    }

    /// What requests are checked against now.
    pub fn current(&self) -> Arc<OfrepAccess> {
        self.current.reading().clone()
    }

    /// Takes reloaded settings for requests from now on.
    pub fn set(&self, settings: &Ofrep) {
        *self.current.writing() = Arc::new(OfrepAccess::new(settings));
        self.changed.send_replace(());
    }

    /// Changes when the settings do.
    pub fn changes(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// The credential in `Authorization: Bearer <value>` or `X-API-Key`, the two
/// schemes the specification names.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    bearer(headers)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
        .filter(|value| !value.is_empty())
}

/// A stable value derived from the token: every node computes the same, and
/// a leaked stream address opens only the stream.
fn ticket(token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"vane ofrep event stream\0")
        .chain_update(token.as_bytes())
        .finalize();
    secrets::hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ClientToken;
    use axum::http::header::AUTHORIZATION;

    fn access() -> OfrepAccess {
        OfrepAccess::new(&Ofrep {
            client_tokens: vec![ClientToken {
                name: "web".into(),
                token: "web-token-0123456789".into(),
                configs: vec!["app-*".into()],
            }],
            ..Ofrep::default()
        })
    }

    #[test]
    fn a_token_is_found_by_itself_or_its_ticket_never_the_other_way() {
        let access = access();
        let web = access.client("web-token-0123456789").expect("the token");
        assert!(web.scope.covers("app-x") && !web.scope.covers("other"));
        assert_eq!(web.ticket.len(), 32);
        assert!(access.by_ticket(&web.ticket.clone()).is_some());
        assert!(access.by_ticket("web-token-0123456789").is_none());
        assert!(access.client(&web.ticket.clone()).is_none());
        assert!(access.client("wrong").is_none());
    }

    #[test]
    fn the_ids_covered_are_picked_once_per_list() {
        let access = access();
        let web = access.client("web-token-0123456789").unwrap();
        let all: Arc<[String]> = ["app-a", "b", "app-c"].map(String::from).into();
        let first = web.covered(&all);
        assert_eq!(&*first, ["app-a", "app-c"]);
        assert!(
            Arc::ptr_eq(&first, &web.covered(&all)),
            "the same list was matched again"
        );
        let newer: Arc<[String]> = ["app-a", "app-d"].map(String::from).into();
        assert_eq!(&*web.covered(&newer), ["app-a", "app-d"]);
    }

    #[test]
    fn either_header_presents_a_credential() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(presented(&headers), Some("k1"));
        headers.insert(AUTHORIZATION, "bearer k2".parse().unwrap());
        assert_eq!(presented(&headers), Some("k2"));
        headers.insert(AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(presented(&headers), Some("k1"));
    }
}
