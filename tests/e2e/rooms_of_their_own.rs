//! Waiting rooms of their own (`POST /v1/admin/rooms`, `roomId` on joins), across three
//! instances over one database: a scheduled opening gives the whole pre-queue one shuffled order
//! that every instance shows alike, a token admits only to its own room's concerts, and each
//! room keeps its own maximum and its own positions.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use concert_e2e::{ADMIN_KEY, Answer, Client, TestApp, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The first instance with its fresh database, and two more over that database. On the embedded
/// store, which serves one instance, the three clients all talk to the first one.
struct Cluster {
    app: TestApp,
    others: Vec<TestServer>,
    instances: [Client; 3],
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let app = TestApp::spawn().await?;
        if !app.store.is_shared() {
            let one = app.client.clone();
            return Ok(Self {
                instances: [one.clone(), one.clone(), one],
                app,
                others: Vec::new(),
            });
        }
        let (second, b) = app.another_instance(|_| {}).await?;
        let (third, c) = app.another_instance(|_| {}).await?;
        let instances = [app.client.clone(), b, c];
        Ok(Self {
            app,
            others: vec![second, third],
            instances,
        })
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        for other in self.others {
            other.stop().await?;
        }
        self.app.shutdown().await
    }
}

/// A room as the brief's example spells it, changed by `adjust`.
fn room_body(
    room: &str,
    concerts: &[i64],
    max_active: u32,
    adjust: impl FnOnce(&mut Value),
) -> Value {
    let mut body = json!({
        "roomId": room,
        "concertIds": concerts,
        "maxActive": max_active,
        "admitPerMinute": null,
        "opensAt": null,
        "shuffleAtOpen": false,
        "waitingIdleSeconds": null,
    });
    adjust(&mut body);
    body
}

async fn create_room(client: &Client, body: &Value) -> anyhow::Result<Answer> {
    client.post("/v1/admin/rooms", Some(ADMIN_KEY), body).await
}

async fn read_room(client: &Client, room: &str) -> anyhow::Result<Answer> {
    client
        .send(
            client
                .raw(Method::GET, &format!("/v1/admin/rooms/{room}"))
                .bearer_auth(ADMIN_KEY),
        )
        .await
}

/// `POST /v1/queue/tokens` for `user` in `room`.
async fn join(client: &Client, user: Uuid, room: &str) -> anyhow::Result<Answer> {
    client
        .post(
            "/v1/queue/tokens",
            None,
            &json!({ "userId": user.to_string(), "roomId": room }),
        )
        .await
}

fn token_of(answer: &Answer) -> anyhow::Result<String> {
    anyhow::ensure!(answer.status.is_success(), "join refused: {}", answer.text);
    answer.body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no token in {}", answer.text))
}

fn assert_problem(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(
        (answer.status, answer.code()),
        (status, code),
        "{}",
        answer.text
    );
    assert!(
        answer
            .content_type()
            .starts_with("application/problem+json"),
        "{}",
        answer.content_type()
    );
}

/// Runs `probe` every 50 ms until it succeeds, for at most `within`; past that, its last
/// refusal. Instances follow the store within an admission interval, so answers that depend on
/// what another instance wrote are awaited, not slept for.
async fn eventually<T, Fut>(within: Duration, mut probe: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(not_yet) if tokio::time::Instant::now() >= deadline => {
                return Err(not_yet.context(format!("still so after {within:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A token's status and position as one instance tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Standing {
    status: String,
    position: Option<u64>,
}

async fn standing(client: &Client, token: &str) -> anyhow::Result<Standing> {
    let answer = client.queue_status(token).await?;
    anyhow::ensure!(answer.status == StatusCode::OK, "{}", answer.text);
    Ok(Standing {
        status: answer.body["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        position: answer.body["position"].as_u64(),
    })
}

async fn standings(client: &Client, tokens: &[String]) -> anyhow::Result<Vec<Standing>> {
    let mut read = Vec::with_capacity(tokens.len());
    for token in tokens {
        read.push(standing(client, token).await?);
    }
    Ok(read)
}

/// Whether a line reads as settled: exactly `max_active` of `line` ACTIVE and the rest WAITING
/// at positions 1, 2, … with none twice; the answer is the set of ACTIVE indexes.
fn settled(line: &[Standing], max_active: usize) -> anyhow::Result<BTreeSet<usize>> {
    let active: BTreeSet<usize> = (0..line.len())
        .filter(|at| line[*at].status == "ACTIVE")
        .collect();
    let mut positions: Vec<u64> = line
        .iter()
        .filter(|standing| standing.status == "WAITING")
        .filter_map(|standing| standing.position)
        .collect();
    positions.sort_unstable();
    let expected: Vec<u64> = (1..=(line.len() - max_active) as u64).collect();
    anyhow::ensure!(
        active.len() == max_active && positions == expected,
        "not settled: {line:?}"
    );
    Ok(active)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_opening_gives_the_pre_queue_one_shuffled_order_on_every_instance()
-> anyhow::Result<()> {
    const PRE_QUEUED: usize = 30;
    const MAX_ACTIVE: usize = 2;
    let cluster = Cluster::start().await?;
    let [a, b, c] = &cluster.instances;
    let (concert, _) = a.concert_with_date(10, 1_000, 5).await?;
    // Whole seconds, so the instant compares as text whatever precision the store keeps.
    let opens_at = OffsetDateTime::now_utc().replace_nanosecond(0)? + time::Duration::seconds(4);
    let opens_at_text = opens_at.format(&Rfc3339)?;
    let created = create_room(
        b,
        &room_body("spring-gala", &[concert], MAX_ACTIVE as u32, |body| {
            body["opensAt"] = json!(opens_at_text);
            body["shuffleAtOpen"] = json!(true);
        }),
    )
    .await?;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        (
            &created.body["state"],
            &created.body["opensAt"],
            &created.body["shuffleAtOpen"],
            &created.body["concertIds"],
        ),
        (
            &json!("PRE_QUEUE"),
            &json!(opens_at_text),
            &json!(true),
            &json!([concert])
        ),
        "{}",
        created.text
    );

    // Thirty users join round the instances before the opening: each is told to come back by
    // then, and has no position yet.
    let mut tokens = Vec::new();
    for n in 0..PRE_QUEUED {
        let joined = join(&cluster.instances[n % 3], Uuid::new_v4(), "spring-gala").await?;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
        assert_eq!(
            (&joined.body["status"], &joined.body["opensAt"]),
            (&json!("PRE_QUEUE"), &json!(opens_at_text)),
            "{}",
            joined.text
        );
        assert!(joined.body["position"].is_null(), "{}", joined.text);
        tokens.push(token_of(&joined)?);
    }
    for (n, token) in tokens.iter().enumerate() {
        // Read on another instance than the one joined through.
        let read = cluster.instances[(n + 1) % 3].queue_status(token).await?;
        assert_eq!(
            (&read.body["status"], &read.body["opensAt"]),
            (&json!("PRE_QUEUE"), &json!(opens_at_text)),
            "{}",
            read.text
        );
        let retry: u32 = read.header("retry-after").unwrap_or_default().parse()?;
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
    }
    let gathered = eventually(Duration::from_secs(1), || async {
        let room = read_room(c, "spring-gala").await?;
        anyhow::ensure!(room.body["preQueued"] == PRE_QUEUED, "{}", room.text);
        Ok(room)
    })
    .await?;
    assert_eq!(gathered.body["state"], "PRE_QUEUE", "{}", gathered.text);
    anyhow::ensure!(
        OffsetDateTime::now_utc() < opens_at,
        "the machine was too slow: the opening came before the pre-queue was checked"
    );

    // The opening: no earlier than opensAt, whichever instance's step runs it. The figures are
    // the instance's view as of its last step, so they may lag the state by one interval.
    let opened = eventually(Duration::from_secs(10), || async {
        let room = read_room(a, "spring-gala").await?;
        anyhow::ensure!(
            room.body["state"] == "OPEN" && room.body["preQueued"] == 0,
            "{}",
            room.text
        );
        Ok(room)
    })
    .await?;
    assert!(
        OffsetDateTime::now_utc() >= opens_at,
        "opened early: {}",
        opened.text
    );

    // A late user joins the line itself, behind everyone from the pre-queue.
    let late = join(c, Uuid::new_v4(), "spring-gala").await?;
    assert_eq!(late.status, StatusCode::CREATED, "{}", late.text);
    assert_eq!(late.body["status"], "WAITING", "{}", late.text);
    let late = token_of(&late)?;

    // Every instance, once it has followed the opening and the admissions, tells the same line:
    // the first MAX_ACTIVE places active, the rest waiting at 1..28, the late user at 29.
    let mut seen = Vec::new();
    for instance in &cluster.instances {
        let line = eventually(Duration::from_secs(5), || async {
            let line = standings(instance, &tokens).await?;
            settled(&line, MAX_ACTIVE)?;
            let behind = standing(instance, &late).await?;
            let last = (PRE_QUEUED - MAX_ACTIVE + 1) as u64;
            anyhow::ensure!(
                behind.status == "WAITING" && behind.position == Some(last),
                "late user at {behind:?}, not {last}"
            );
            Ok(line)
        })
        .await?;
        seen.push(line);
    }
    assert_eq!(seen[0], seen[1], "instances a and b disagree");
    assert_eq!(seen[0], seen[2], "instances a and c disagree");

    // Shuffled: not arrival order (the odds of a shuffle keeping it are 1 in 30!).
    let line = &seen[0];
    let arrival_order = (0..PRE_QUEUED).all(|n| {
        if n < MAX_ACTIVE {
            line[n].status == "ACTIVE"
        } else {
            line[n].position == Some((n - MAX_ACTIVE + 1) as u64)
        }
    });
    assert!(!arrival_order, "the opening kept arrival order: {line:?}");

    let room = eventually(Duration::from_secs(2), || async {
        let room = read_room(b, "spring-gala").await?;
        anyhow::ensure!(
            room.body["waiting"] == PRE_QUEUED - MAX_ACTIVE + 1
                && room.body["active"] == MAX_ACTIVE,
            "{}",
            room.text
        );
        Ok(room)
    })
    .await?;
    assert_eq!(
        (
            &room.body["state"],
            &room.body["preQueued"],
            &room.body["issued"]
        ),
        (&json!("OPEN"), &json!(0), &json!(PRE_QUEUED + 1)),
        "{}",
        room.text
    );
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_admits_only_to_the_concerts_of_its_own_room() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let [a, b, c] = &cluster.instances;
    let (gala, gala_date) = a.concert_with_date(5, 2_000, 6).await?;
    let (other, other_date) = a.concert_with_date(5, 1_000, 6).await?;

    let created = create_room(a, &room_body("spring-gala", &[gala], 2, |_| {})).await?;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    for (field, value) in [
        ("roomId", json!("spring-gala")),
        ("concertIds", json!([gala])),
        ("maxActive", json!(2)),
        ("state", json!("OPEN")),
        ("preQueued", json!(0)),
        ("waiting", json!(0)),
        ("active", json!(0)),
        ("issued", json!(0)),
        ("opensAt", Value::Null),
        ("shuffleAtOpen", json!(false)),
        ("admitPerMinute", Value::Null),
        ("waitingIdleSeconds", Value::Null),
    ] {
        assert_eq!(created.body[field], value, "{field}: {}", created.text);
    }

    // Refused creations, through the other instances (they read the store, not their views).
    let refusals = [
        // The same id, whatever it names.
        (
            room_body("spring-gala", &[other], 1, |_| {}),
            StatusCode::CONFLICT,
            "ROOM_EXISTS",
        ),
        (
            room_body("default", &[other], 1, |_| {}),
            StatusCode::CONFLICT,
            "ROOM_EXISTS",
        ),
        // A concert leaves only the default room.
        (
            room_body("autumn", &[other, gala], 1, |_| {}),
            StatusCode::CONFLICT,
            "CONCERT_IN_ANOTHER_ROOM",
        ),
        (
            room_body("autumn", &[other, 987_654], 1, |_| {}),
            StatusCode::NOT_FOUND,
            "CONCERT_NOT_FOUND",
        ),
        (
            room_body("Autumn Gala", &[other], 1, |_| {}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            room_body("autumn", &[], 1, |_| {}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            room_body("autumn", &[other], 0, |_| {}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            room_body("autumn", &[other], 1, |body| {
                body["shuffleAtOpen"] = json!(true)
            }),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
    ];
    for (n, (body, status, code)) in refusals.iter().enumerate() {
        let refused = create_room([b, c][n % 2], body).await?;
        assert_problem(&refused, *status, code);
    }
    // Nothing of a refused creation stays behind.
    assert_problem(
        &read_room(b, "autumn").await?,
        StatusCode::NOT_FOUND,
        "ROOM_NOT_FOUND",
    );

    // Joining a room that does not exist, or by a malformed id.
    let unknown = join(c, Uuid::new_v4(), "no-such-room").await?;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "ROOM_NOT_FOUND");
    let malformed = join(c, Uuid::new_v4(), "Spring Gala").await?;
    assert_problem(&malformed, StatusCode::BAD_REQUEST, "VALIDATION_FAILED");

    // One user, active in both lines: the default room's token and the gala's.
    let alice = Uuid::new_v4();
    let default_token = b.active_token(alice).await?;
    let joined = join(c, alice, "spring-gala").await?;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
    let gala_token = token_of(&joined)?;
    a.wait_for_status(&gala_token, "ACTIVE", Duration::from_secs(5))
        .await?;

    let dates = |concert: i64| format!("/v1/concerts/{concert}/dates");
    let seats = |concert: i64, date: &str| format!("/v1/concerts/{concert}/dates/{date}/seats");
    let seat_map =
        |concert: i64, date: &str| format!("/v1/concerts/{concert}/dates/{date}/seat-map");
    for instance in &cluster.instances {
        // Each instance learns the new room's concerts at its next admission step.
        eventually(Duration::from_secs(2), || async {
            let read = instance.get(&dates(gala), Some(&default_token)).await?;
            anyhow::ensure!(read.status == StatusCode::FORBIDDEN, "{}", read.text);
            Ok(())
        })
        .await?;
        for (token, concert, date) in [
            (&default_token, gala, &gala_date),
            (&gala_token, other, &other_date),
        ] {
            for path in [
                dates(concert),
                seats(concert, date),
                seat_map(concert, date),
            ] {
                let refused = instance.get(&path, Some(token)).await?;
                assert_problem(&refused, StatusCode::FORBIDDEN, "TOKEN_WRONG_ROOM");
            }
            let held = instance.hold(token, concert, date, 1).await?;
            assert_problem(&held, StatusCode::FORBIDDEN, "TOKEN_WRONG_ROOM");
        }
        // Each token still serves its own room's concerts.
        for (token, concert) in [(&default_token, other), (&gala_token, gala)] {
            let read = instance.get(&dates(concert), Some(token)).await?;
            assert_eq!(read.status, StatusCode::OK, "{}", read.text);
            assert_eq!(read.body["dates"][0]["availableSeats"], 5, "{}", read.text);
        }
    }

    // The gala token holds and pays the gala's seat; the default token may not pay for it, even
    // though the reservation is its user's.
    let held = b.hold(&gala_token, gala, &gala_date, 1).await?;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    let reservation = held.body["reservationId"].as_i64().expect("reservationId");
    let charged = a.charge(alice, 5_000, None).await?;
    assert_eq!(charged.status, StatusCode::OK, "{}", charged.text);
    let refused = a.pay(&default_token, reservation, None).await?;
    assert_problem(&refused, StatusCode::FORBIDDEN, "TOKEN_WRONG_ROOM");
    assert_eq!(a.balance(alice).await?, 5_000, "nothing was charged");
    let paid = c.pay(&gala_token, reservation, None).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(
        (&paid.body["amount"], &paid.body["balance"]),
        (&json!(2_000), &json!(3_000)),
        "{}",
        paid.text
    );
    // Paying ends the gala token only: the default room's token lives on and still holds.
    let ended = b.queue_status(&gala_token).await?;
    assert_eq!(
        (&ended.body["status"], &ended.body["reason"]),
        (&json!("EXPIRED"), &json!("PAID")),
        "{}",
        ended.text
    );
    assert_eq!(standing(c, &default_token).await?.status, "ACTIVE");
    let held = c.hold(&default_token, other, &other_date, 1).await?;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_room_admits_up_to_its_own_maximum_and_numbers_its_own_line() -> anyhow::Result<()> {
    const PER_ROOM: usize = 3;
    let cluster = Cluster::start().await?;
    let [a, b, c] = &cluster.instances;
    let (north_concert, north_date) = a.concert_with_date(5, 1_000, 7).await?;
    let (south_concert, _) = a.concert_with_date(5, 1_000, 7).await?;
    for (instance, room, concert) in [(a, "north", north_concert), (b, "south", south_concert)] {
        let created = create_room(instance, &room_body(room, &[concert], 1, |_| {})).await?;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }

    // The two lines fill in turns, each user through another instance than the last.
    let (mut north, mut south) = (Vec::new(), Vec::new());
    for n in 0..PER_ROOM {
        north.push(token_of(
            &join(&cluster.instances[n % 3], Uuid::new_v4(), "north").await?,
        )?);
        south.push(token_of(
            &join(&cluster.instances[(n + 1) % 3], Uuid::new_v4(), "south").await?,
        )?);
    }

    // Every instance tells each line alike: its first user active, the other two at 1 and 2.
    for instance in &cluster.instances {
        for line in [&north, &south] {
            let read = eventually(Duration::from_secs(5), || async {
                let read = standings(instance, line).await?;
                let active = settled(&read, 1)?;
                anyhow::ensure!(active == BTreeSet::from([0]), "not the first: {read:?}");
                Ok(read)
            })
            .await?;
            assert_eq!(read[1].position, Some(1), "{read:?}");
            assert_eq!(read[2].position, Some(2), "{read:?}");
        }
    }
    for (instance, room) in [(c, "north"), (a, "south")] {
        let figures = eventually(Duration::from_secs(2), || async {
            let figures = read_room(instance, room).await?;
            anyhow::ensure!(figures.body["waiting"] == 2, "{}", figures.text);
            Ok(figures)
        })
        .await?;
        assert_eq!(
            (&figures.body["active"], &figures.body["issued"]),
            (&json!(1), &json!(PER_ROOM)),
            "{}",
            figures.text
        );
    }
    // Neither room's maximum holds the default room back.
    b.active_token(Uuid::new_v4()).await?;

    // North's active user reads north's concert, not south's.
    let own = c
        .get(
            &format!("/v1/concerts/{north_concert}/dates"),
            Some(&north[0]),
        )
        .await?;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    eventually(Duration::from_secs(2), || async {
        let foreign = c
            .get(
                &format!("/v1/concerts/{south_concert}/dates"),
                Some(&north[0]),
            )
            .await?;
        anyhow::ensure!(foreign.code() == "TOKEN_WRONG_ROOM", "{}", foreign.text);
        Ok(())
    })
    .await?;
    let held = b.hold(&south[0], north_concert, &north_date, 2).await?;
    assert_problem(&held, StatusCode::FORBIDDEN, "TOKEN_WRONG_ROOM");

    // North's first user leaves: north's next is admitted, south's line does not move.
    assert_eq!(
        b.leave_line(&north[0]).await?.status,
        StatusCode::NO_CONTENT
    );
    a.wait_for_status(&north[1], "ACTIVE", Duration::from_secs(3))
        .await?;
    let moved = eventually(Duration::from_secs(2), || async {
        let moved = standing(c, &north[2]).await?;
        anyhow::ensure!(moved.position == Some(1), "{moved:?}");
        Ok(moved)
    })
    .await?;
    assert_eq!(moved.status, "WAITING");
    for instance in &cluster.instances {
        let still = standings(instance, &south).await?;
        assert_eq!(settled(&still, 1)?, BTreeSet::from([0]), "{still:?}");
    }
    cluster.shutdown().await
}
