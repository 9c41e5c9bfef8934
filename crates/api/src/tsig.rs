//! The TsigKeys service: create, list and delete TSIG keys (admin only).
//! The secret is made here, on the node that takes the call, and returned
//! once; it travels in the command and is stored, since HMACs need it.

use ring::rand::{SecureRandom, SystemRandom};
use switchboard_domain::tsig::{Algorithm, Allow};
use switchboard_domain::{Access, Command, Outcome, Scope, TsigKey};
use tonic::{Request, Response, Status};

use crate::convert::scope_in;
use crate::proto::{self, tsig_keys_server};
use crate::service::Api;
use crate::status;

type Reply<T> = Result<Response<T>, Status>;

/// A key as the API shows it: never its secret.
pub(crate) fn key_out(k: &TsigKey) -> proto::TsigKey {
    let (environments, zones, tenant) = match &k.scope {
        Scope::All => (Vec::new(), Vec::new(), String::new()),
        Scope::Environments(e) => (e.clone(), Vec::new(), String::new()),
        Scope::Zones(z) => (Vec::new(), z.clone(), String::new()),
        Scope::Tenant(t) => (Vec::new(), Vec::new(), t.clone()),
    };
    proto::TsigKey {
        name: k.name.clone(),
        algorithm: k.algorithm.as_str().into(),
        environments,
        zones,
        tenant,
        allow: k.allow.names().into_iter().map(String::from).collect(),
        created_at_ms: k.created_at_ms,
        revision: k.revision,
    }
}

#[tonic::async_trait]
impl tsig_keys_server::TsigKeys for Api {
    async fn create_tsig_key(&self, req: Request<proto::CreateTsigKeyRequest>) -> Reply<proto::CreateTsigKeyResponse> {
        // Admins only, checked before a secret is made; apply checks again.
        let caller = self.check(&req, Access::Credentials)?;
        let r = req.into_inner();
        let algorithm = Algorithm::parse("algorithm", &r.algorithm).map_err(status::invalid)?;
        let allow = Allow::parse("allow", &r.allow).map_err(status::invalid)?;
        let scope = scope_in(&r.environments, &r.zones, &r.tenant).map_err(status::invalid)?;
        let mut secret = vec![0u8; algorithm.mac_len()];
        SystemRandom::new().fill(&mut secret).map_err(|_| Status::internal("no randomness for a new TSIG secret"))?;
        let key = TsigKey { name: r.name, algorithm, secret, scope, allow, created_at_ms: 0, revision: 0 };
        // Checked here to answer INVALID_ARGUMENT before anything is proposed.
        let key = key.validate().map_err(status::invalid)?;
        match self.write(&caller, Command::CreateTsigKey { key }, None).await? {
            (revision, Outcome::TsigKey(k)) => {
                Ok(Response::new(proto::CreateTsigKeyResponse { revision, key: Some(key_out(&k)), secret: k.secret.clone() }))
            }
            (_, other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn list_tsig_keys(&self, req: Request<proto::ListTsigKeysRequest>) -> Reply<proto::ListTsigKeysResponse> {
        self.check(&req, Access::Credentials)?;
        let state = self.node.state();
        let keys = state.tsig_keys().map(|k| key_out(k)).collect();
        Ok(Response::new(proto::ListTsigKeysResponse { keys, revision: state.revision() }))
    }

    async fn delete_tsig_key(&self, req: Request<proto::DeleteTsigKeyRequest>) -> Reply<proto::DeleteResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("name: required"));
        }
        let (revision, _) = self.write(&caller, Command::DeleteTsigKey { name: r.name }, r.options).await?;
        Ok(Response::new(proto::DeleteResponse { revision }))
    }
}
