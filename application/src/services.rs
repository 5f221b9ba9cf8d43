//! Every use case built over one set of ports: the single place that knows which use case needs
//! which port. The server's bootstrap and the HTTP adapter's tests both wire through it.

use std::sync::Arc;

use concert_domain::{QueuePolicy, RetentionPolicy, WalletLimits};

use crate::admin_access::{AdminAccess, AdminKey};
use crate::admit_next_in_line::AdmitNextInLine;
use crate::authorize_request::AuthorizeRequest;
use crate::cancel_reservation::CancelReservation;
use crate::charge_points::ChargePoints;
use crate::create_concert::CreateConcert;
use crate::hold_seat::{HoldSeat, HoldSettings};
use crate::identify_caller::{IdentifyCaller, IdentityMode};
use crate::issue_queue_token::IssueQueueToken;
use crate::leave_queue::LeaveQueue;
use crate::list_available_dates::ListAvailableDates;
use crate::list_available_seats::ListAvailableSeats;
use crate::list_concerts::ListConcerts;
use crate::manage_rooms::ManageRooms;
use crate::pay_reservation::{PayReservation, PayReservationPorts};
use crate::ports::{
    AdmissionTrigger, CatalogRepository, Clock, IdempotencyStore, PaymentRepository,
    QueueRepository, ReservationRepository, RetentionRepository, RoomRepository, SecureRandom,
    TicketEndOutbox, TokenSigner, WalletRepository,
};
use crate::purge_expired_records::PurgeExpiredRecords;
use crate::queue_access::QueueAccess;
use crate::read_balance::ReadBalance;
use crate::read_gauges::ReadGauges;
use crate::read_point_history::ReadPointHistory;
use crate::read_queue_status::ReadQueueStatus;
use crate::read_reservation::ReadReservation;
use crate::read_seat_map::ReadSeatMap;
use crate::relay_ticket_ends::{RelayTicketEnds, RelayTicketEndsPorts};
use crate::revoke_queue_token::RevokeQueueToken;
use crate::room_lines::RoomLines;
use crate::sweep_lapsed_holds::SweepLapsedHolds;
use crate::waiting_polls::WaitingPolls;
use crate::watch_queue_status::WatchQueueStatus;

/// The adapters behind every port.
pub struct Ports {
    pub clock: Arc<dyn Clock>,
    pub signer: Arc<dyn TokenSigner>,
    pub catalog: Arc<dyn CatalogRepository>,
    pub reservations: Arc<dyn ReservationRepository>,
    pub wallets: Arc<dyn WalletRepository>,
    pub payments: Arc<dyn PaymentRepository>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn QueueRepository>,
    pub admission: Arc<dyn AdmissionTrigger>,
    pub retention: Arc<dyn RetentionRepository>,
    pub rooms: Arc<dyn RoomRepository>,
    pub random: Arc<dyn SecureRandom>,
    /// Where payments write the ticket ends they decide when the line lives in another store
    /// than payments (the line on Redis); `None` when a payment ends its ticket itself.
    pub ticket_ends: Option<Arc<dyn TicketEndOutbox>>,
}

/// The business settings of docs/API.md section 8.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: QueuePolicy,
    pub holds: HoldSettings,
    pub wallet: WalletLimits,
    pub admin_key: AdminKey,
    /// Who vouches for the user a join or a points request names.
    pub identity: IdentityMode,
    pub retention: RetentionPolicy,
    /// Clients watching their tokens at once on one instance, at most.
    pub most_status_watches: usize,
}

/// One instance of every use case, sharing this instance's rooms and their lines' views
/// ([`RoomLines`]).
pub struct Services {
    pub lines: RoomLines,
    /// Waiting polls this instance answered, to be written down by a job.
    pub waiting_polls: WaitingPolls,
    /// Who may call the administration endpoints (shared by every admin use case).
    pub admin: Arc<AdminAccess>,
    pub identify_caller: Arc<IdentifyCaller>,
    pub issue_queue_token: Arc<IssueQueueToken>,
    pub read_queue_status: Arc<ReadQueueStatus>,
    pub watch_queue_status: Arc<WatchQueueStatus>,
    pub leave_queue: Arc<LeaveQueue>,
    pub revoke_queue_token: Arc<RevokeQueueToken>,
    pub manage_rooms: Arc<ManageRooms>,
    pub authorize: Arc<AuthorizeRequest>,
    pub list_concerts: Arc<ListConcerts>,
    pub list_available_dates: Arc<ListAvailableDates>,
    pub list_available_seats: Arc<ListAvailableSeats>,
    pub read_seat_map: Arc<ReadSeatMap>,
    pub hold_seat: Arc<HoldSeat>,
    pub read_reservation: Arc<ReadReservation>,
    pub cancel_reservation: Arc<CancelReservation>,
    pub charge_points: Arc<ChargePoints>,
    pub read_balance: Arc<ReadBalance>,
    pub read_point_history: Arc<ReadPointHistory>,
    pub pay_reservation: Arc<PayReservation>,
    pub create_concert: Arc<CreateConcert>,
    pub admit_next_in_line: Arc<AdmitNextInLine>,
    pub sweep_lapsed_holds: Arc<SweepLapsedHolds>,
    pub purge_expired_records: Arc<PurgeExpiredRecords>,
    pub read_gauges: Arc<ReadGauges>,
    /// Applies the ticket ends payments left in the outbox (with [`Ports::ticket_ends`]).
    pub relay_ticket_ends: Option<Arc<RelayTicketEnds>>,
}

impl Services {
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let Ports {
            clock,
            signer,
            catalog,
            reservations,
            wallets,
            payments,
            idempotency,
            queue,
            admission,
            retention,
            rooms,
            random,
            ticket_ends,
        } = ports;
        let policy = settings.queue;
        let lines = RoomLines::new(queue.clone(), policy);
        let access = QueueAccess::new(signer, queue.clone(), clock.clone(), lines.clone(), policy);
        let waiting_polls = access.polls.clone();
        let authorize = Arc::new(AuthorizeRequest::new(access.clone()));
        let admin = Arc::new(AdminAccess::new(settings.admin_key, clock.clone()));
        let relay_ticket_ends = ticket_ends.map(|outbox| {
            Arc::new(RelayTicketEnds::new(RelayTicketEndsPorts {
                outbox,
                queue: queue.clone(),
                lines: lines.clone(),
                admission: admission.clone(),
                clock: clock.clone(),
            }))
        });
        let pay_reservation = PayReservation::new(PayReservationPorts {
            authorize: authorize.clone(),
            payments,
            idempotency: idempotency.clone(),
            admission: admission.clone(),
            clock: clock.clone(),
        });
        let pay_reservation = match &relay_ticket_ends {
            Some(relay) => pay_reservation.with_ticket_end_relay(Arc::clone(relay)),
            None => pay_reservation,
        };
        Self {
            identify_caller: Arc::new(IdentifyCaller::new(settings.identity)),
            issue_queue_token: Arc::new(IssueQueueToken::new(
                access.clone(),
                rooms.clone(),
                admission.clone(),
            )),
            read_queue_status: Arc::new(ReadQueueStatus::new(access.clone())),
            watch_queue_status: Arc::new(WatchQueueStatus::new(
                access.clone(),
                settings.most_status_watches,
            )),
            leave_queue: Arc::new(LeaveQueue::new(access.clone(), admission.clone())),
            manage_rooms: Arc::new(ManageRooms::new(
                rooms.clone(),
                lines.clone(),
                admin.clone(),
                clock.clone(),
            )),
            revoke_queue_token: Arc::new(RevokeQueueToken::new(
                access,
                rooms.clone(),
                admin.clone(),
                admission.clone(),
            )),
            authorize: authorize.clone(),
            list_concerts: Arc::new(ListConcerts::new(catalog.clone(), clock.clone())),
            list_available_dates: Arc::new(ListAvailableDates::new(
                catalog.clone(),
                clock.clone(),
                lines.clone(),
            )),
            list_available_seats: Arc::new(ListAvailableSeats::new(
                catalog.clone(),
                clock.clone(),
                lines.clone(),
            )),
            read_seat_map: Arc::new(ReadSeatMap::new(
                catalog.clone(),
                clock.clone(),
                lines.clone(),
            )),
            hold_seat: Arc::new(HoldSeat::new(
                catalog.clone(),
                reservations.clone(),
                clock.clone(),
                settings.holds,
                lines.clone(),
            )),
            read_reservation: Arc::new(ReadReservation::new(reservations.clone(), clock.clone())),
            cancel_reservation: Arc::new(CancelReservation::new(
                reservations.clone(),
                clock.clone(),
            )),
            charge_points: Arc::new(ChargePoints::new(
                wallets.clone(),
                idempotency.clone(),
                clock.clone(),
                settings.wallet,
            )),
            read_balance: Arc::new(ReadBalance::new(wallets.clone())),
            read_point_history: Arc::new(ReadPointHistory::new(wallets.clone())),
            pay_reservation: Arc::new(pay_reservation),
            create_concert: Arc::new(CreateConcert::new(
                catalog,
                clock.clone(),
                admin.clone(),
                settings.wallet.max_charge,
            )),
            admit_next_in_line: Arc::new(AdmitNextInLine::new(
                queue,
                rooms.clone(),
                lines.clone(),
                clock.clone(),
                policy,
                random,
            )),
            purge_expired_records: Arc::new(PurgeExpiredRecords::new(
                retention,
                clock.clone(),
                settings.retention,
            )),
            sweep_lapsed_holds: Arc::new(SweepLapsedHolds::new(
                reservations.clone(),
                clock.clone(),
            )),
            read_gauges: Arc::new(ReadGauges::new(lines.clone(), reservations, clock)),
            lines,
            waiting_polls,
            admin,
            relay_ticket_ends,
        }
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::TicketStatus;
    use concert_domain::queue::ServingCounter;

    use super::*;
    use crate::ports::{
        MockAdmissionTrigger, MockCatalogRepository, MockIdempotencyStore, MockPaymentRepository,
        MockQueueRepository, MockReservationRepository, MockRetentionRepository,
        MockRoomRepository, MockTokenSigner, MockWalletRepository, QueueSnapshot,
    };
    use crate::test_support::{NOW, claims, clock};

    #[tokio::test]
    async fn every_queue_use_case_answers_from_the_one_shared_view() {
        let mut queue = MockQueueRepository::new();
        queue.expect_snapshot().times(1).returning(|_| {
            Ok(QueueSnapshot {
                serving: ServingCounter::new(5),
                ..QueueSnapshot::default()
            })
        });
        queue.expect_ended_waiting().returning(|_| Ok(Vec::new()));
        queue.expect_find().never();
        let mut signer = MockTokenSigner::new();
        signer.expect_verify().returning(|_| Ok(claims(7)));
        let services = Services::new(
            Ports {
                clock: clock(),
                signer: Arc::new(signer),
                catalog: Arc::new(MockCatalogRepository::new()),
                reservations: Arc::new(MockReservationRepository::new()),
                wallets: Arc::new(MockWalletRepository::new()),
                payments: Arc::new(MockPaymentRepository::new()),
                idempotency: Arc::new(MockIdempotencyStore::new()),
                queue: Arc::new(queue),
                admission: Arc::new(MockAdmissionTrigger::new()),
                retention: Arc::new(MockRetentionRepository::new()),
                rooms: Arc::new(MockRoomRepository::new()),
                random: Arc::new(crate::ports::MockSecureRandom::new()),
                ticket_ends: None,
            },
            Settings {
                queue: QueuePolicy::default(),
                holds: HoldSettings::default(),
                wallet: WalletLimits::default(),
                admin_key: AdminKey::default(),
                identity: crate::identify_caller::IdentityMode::Trusted,
                retention: RetentionPolicy::default(),
                most_status_watches: 10,
            },
        );
        services
            .lines
            .default_line()
            .refresh(NOW)
            .await
            .expect("refresh");
        let status = services
            .read_queue_status
            .execute("token")
            .await
            .expect("status");
        assert_eq!(status.status, TicketStatus::Waiting);
        assert_eq!(status.position, Some(2));
        let refused = services.authorize.execute("token").await;
        assert!(matches!(
            refused,
            Err(crate::authorize_request::AuthorizeError::QueueNotActive)
        ));
    }
}
