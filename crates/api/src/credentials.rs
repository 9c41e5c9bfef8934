//! The Credentials service: create, list and revoke API tokens (admin only).

use switchboard_domain::{Access, Command, Credential, Outcome};
use tonic::{Request, Response, Status};

use crate::auth::new_token;
use crate::convert::{credential_out, credential_scope};
use crate::proto::{self, credentials_server};
use crate::service::Api;
use crate::status;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl credentials_server::Credentials for Api {
    async fn create_credential(&self, req: Request<proto::CreateCredentialRequest>) -> Reply<proto::CreateCredentialResponse> {
        // Admins only, checked before a token is made; apply checks again.
        let caller = self.check(&req, Access::Credentials)?;
        let r = req.into_inner();
        let (role, scope) = credential_scope(&r).map_err(status::invalid)?;
        let (id, token, hash) = new_token()?;
        let credential = Credential { id, name: r.name, role, scope, hash, created_at_ms: 0, revision: 0 };
        // Checked here to answer INVALID_ARGUMENT before anything is proposed.
        let credential = credential.validate().map_err(status::invalid)?;
        match self.write(&caller, Command::CreateCredential { credential }, None).await? {
            (revision, Outcome::Credential(c)) => {
                Ok(Response::new(proto::CreateCredentialResponse { revision, credential: Some(credential_out(&c)), token }))
            }
            (_, other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn list_credentials(&self, req: Request<proto::ListCredentialsRequest>) -> Reply<proto::ListCredentialsResponse> {
        self.check(&req, Access::Credentials)?;
        let state = self.node.state();
        let credentials = state.credentials().map(|c| credential_out(c)).collect();
        Ok(Response::new(proto::ListCredentialsResponse { credentials, revision: state.revision() }))
    }

    async fn revoke_credential(&self, req: Request<proto::RevokeCredentialRequest>) -> Reply<proto::DeleteResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id: required"));
        }
        let (revision, _) = self.write(&caller, Command::RevokeCredential { id: r.id }, r.options).await?;
        Ok(Response::new(proto::DeleteResponse { revision }))
    }
}
