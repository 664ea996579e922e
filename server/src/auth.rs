//! Authentication (bearer tokens) and the role/scope rules of the API.
//!
//! Authentication happens at the edge: [`Authenticate`] is a tonic
//! interceptor that puts the caller's [`Principal`] into the request's
//! extensions. Authorization happens at the one door (the `service` module),
//! which calls the `may_*` rules below; nothing else decides who may do what.

use std::sync::Arc;

use scoring::{Enterprise, KindClass, WorkflowKind};
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::principals::{Principal, PrincipalStore, Role};

/// The interceptor in front of every `ecocode.v1` service.
#[derive(Clone, Debug)]
pub struct Authenticate {
    principals: Arc<PrincipalStore>,
}

impl Authenticate {
    pub fn new(principals: Arc<PrincipalStore>) -> Authenticate {
        Authenticate { principals }
    }
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let principal = authenticate(&self.principals, request.metadata())?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The principal [`Authenticate`] put into `request`.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| {
        tonic::Status::unauthenticated("missing authorization metadata; send `authorization: Bearer <token>`")
    })
}

/// The principal behind the request's `authorization: Bearer <token>`.
pub fn authenticate(principals: &PrincipalStore, metadata: &MetadataMap) -> Result<Principal> {
    let header = metadata.get("authorization").ok_or_else(|| {
        Error::Unauthenticated("missing authorization metadata; send `authorization: Bearer <token>`".into())
    })?;
    let header =
        header.to_str().map_err(|_| Error::Unauthenticated("authorization metadata is not ASCII".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| Error::Unauthenticated("authorization metadata must be `Bearer <token>`".into()))?;
    principals.authenticate(token.trim())?.ok_or_else(|| {
        Error::Unauthenticated("unknown token; create one with `ecocode principal add`".into())
    })
}

fn denied(p: &Principal, what: &str) -> Error {
    Error::PermissionDenied(format!("principal {:?} ({}) may not {what}", p.name, p.role.name()))
}

fn in_region(prefix: &str, e: &Enterprise) -> bool {
    e.region_code.starts_with(prefix)
}

pub fn may_register(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Regulator { region_prefix } => Err(denied(
            p,
            &format!("register enterprises in region {} (scope {region_prefix})", e.region_code),
        )),
        _ => Err(denied(p, "register enterprises")),
    }
}

/// Whether the role may append this kind at all, before the enterprise is looked up.
pub fn may_append_kind(p: &Principal, kind: &str, class: KindClass, source: &str) -> Result<()> {
    use WorkflowKind::*;
    let ok = match (&p.role, class) {
        (Role::Admin, _) => true,
        (Role::Regulator { .. }, KindClass::Scored { .. }) => true,
        (Role::Regulator { .. }, KindClass::Workflow(w)) => {
            matches!(w, DisputeResolved | RecordVoided | RectificationVerified | RepairGranted)
        }
        (Role::Enterprise { .. }, KindClass::Workflow(w)) => {
            matches!(w, DisputeOpened | RectificationSubmitted)
        }
        (Role::Source { source: own }, KindClass::Scored { .. }) => {
            if own != source {
                return Err(denied(
                    p,
                    &format!("append records for source {source:?}; it is bound to {own:?}"),
                ));
            }
            true
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(denied(p, &format!("append {kind} records"))) }
}

/// Whether the principal may act on records of this (registered) enterprise.
pub fn may_append_for(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Source { .. } => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        _ => Err(denied(p, &format!("append records about {}", e.uscc))),
    }
}

pub fn may_read_score(p: &Principal, e: &Enterprise) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Lender => Ok(()),
        Role::Regulator { region_prefix } if in_region(region_prefix, e) => Ok(()),
        Role::Enterprise { uscc } if *uscc == e.uscc.as_str() => Ok(()),
        _ => Err(denied(p, &format!("read the score of {}", e.uscc))),
    }
}

/// For score reads of a USCC that may not be registered: whether the caller
/// may learn that it is not (lenders, admins and regulators may).
pub fn may_read_scores_at_all(p: &Principal, uscc: &str) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Lender | Role::Regulator { .. } => Ok(()),
        Role::Enterprise { uscc: own } if own == uscc => Ok(()),
        _ => Err(denied(p, &format!("read the score of {uscc}"))),
    }
}

/// The region prefix a listing is restricted to: the request's own, narrowed
/// by a regulator's scope.
pub fn list_scope(p: &Principal, requested: &str) -> Result<String> {
    match &p.role {
        Role::Admin => Ok(requested.to_owned()),
        Role::Regulator { region_prefix } => {
            if requested.starts_with(region_prefix.as_str()) {
                Ok(requested.to_owned())
            } else if region_prefix.starts_with(requested) {
                Ok(region_prefix.clone())
            } else {
                Err(denied(p, &format!("list region {requested:?} outside its scope {region_prefix:?}")))
            }
        }
        _ => Err(denied(p, "list scores")),
    }
}

pub fn may_read_ledger(p: &Principal) -> Result<()> {
    match &p.role {
        Role::Admin | Role::Regulator { .. } | Role::Lender | Role::Enterprise { .. } => Ok(()),
        Role::Source { .. } => Err(denied(p, "read the ledger")),
    }
}

/// Entries are readable by everyone with ledger access, except that an
/// enterprise reads only entries about itself.
pub fn may_read_entry(p: &Principal, subject: &[u8], seq: u64) -> Result<()> {
    may_read_ledger(p)?;
    match &p.role {
        Role::Enterprise { uscc } if uscc.as_bytes() != subject => {
            Err(denied(p, &format!("read entry {seq}, which is not about {uscc}")))
        }
        _ => Ok(()),
    }
}
