//! What the queue's use cases share: the token signer, the line in the database, this instance's
//! view of it, the clock and the queue policy.

use std::sync::Arc;

use concert_domain::QueuePolicy;

use crate::ports::{Clock, QueueRepository, TokenSigner};
use crate::queue_view::QueueView;

#[derive(Clone)]
pub struct QueueAccess {
    pub signer: Arc<dyn TokenSigner>,
    pub queue: Arc<dyn QueueRepository>,
    pub clock: Arc<dyn Clock>,
    pub view: QueueView,
    pub policy: QueuePolicy,
}
