//! The Acme service: ACME DNS-01 challenges at `_acme-challenge` names.

use switchboard_domain::credential::tenant_of_name;
use switchboard_domain::{model, name, Access, Command, Outcome, Role, Scope};
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::convert::challenge_out;
use crate::proto::{self, acme_server};
use crate::service::Api;
use crate::status;

type Reply<T> = Result<Response<T>, Status>;

impl Api {
    async fn challenge_write(
        &self,
        caller: &Caller,
        command: Command,
        options: Option<proto::WriteOptions>,
    ) -> Reply<proto::ChallengeResponse> {
        match self.write(caller, command, options).await? {
            (revision, Outcome::Acme(c)) => {
                let challenge = (!c.values.is_empty()).then(|| challenge_out(&c));
                Ok(Response::new(proto::ChallengeResponse { revision, challenge }))
            }
            (_, other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

#[tonic::async_trait]
impl acme_server::Acme for Api {
    async fn set_challenge(&self, req: Request<proto::SetChallengeRequest>) -> Reply<proto::ChallengeResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        // Checked here to answer INVALID_ARGUMENT before anything is proposed;
        // apply checks again (and the zone, which may change meanwhile).
        model::acme_owner("name", &r.name).map_err(status::invalid)?;
        model::acme_value("value", &r.value).map_err(status::invalid)?;
        let command = Command::SetAcme { name: r.name, value: r.value, ttl: r.ttl, expires_in_s: r.expires_in_s };
        self.challenge_write(&caller, command, r.options).await
    }

    async fn clear_challenge(&self, req: Request<proto::ClearChallengeRequest>) -> Reply<proto::ChallengeResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        model::acme_owner("name", &r.name).map_err(status::invalid)?;
        let value = (!r.value.is_empty()).then_some(r.value);
        self.challenge_write(&caller, Command::ClearAcme { name: r.name, value }, r.options).await
    }

    /// A tenant credential lists the challenges of its own names only.
    async fn list_challenges(&self, req: Request<proto::ListChallengesRequest>) -> Reply<proto::ListChallengesResponse> {
        let caller = self.caller(&req)?;
        let state = self.node.state();
        let own = match &caller {
            Caller::Credential(c) if c.role == Role::Tenant => match &c.scope {
                Scope::Tenant(t) => Some(t.clone()),
                _ => return Err(Status::permission_denied("a tenant credential without its tenant")),
            },
            _ => {
                self.auth.allow(&state, &caller, Access::ReadData)?;
                None
            }
        };
        let r = req.into_inner();
        let within = if r.within.is_empty() { None } else { Some(name::absolute("within", &r.within).map_err(status::invalid)?) };
        let challenges = state
            .challenges()
            .filter(|c| within.as_deref().is_none_or(|w| name::is_within(&c.name, w)))
            .filter(|c| own.as_ref().is_none_or(|own| tenant_of_name(&state, &c.name).is_some_and(|t| t.id == *own)))
            .map(|c| challenge_out(c))
            .collect();
        Ok(Response::new(proto::ListChallengesResponse { challenges, revision: state.revision() }))
    }
}
