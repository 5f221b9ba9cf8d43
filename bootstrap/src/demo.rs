//! `DEMO_DATA=true`: a few concerts with future dates, so a fresh install has something to book.

use concert_application::create_concert::{CreateConcert, CreateConcertCommand, NewDateCommand};
use concert_application::ports::CatalogRepository;
use time::{Duration, OffsetDateTime};

/// Creates the demo concerts when the catalog is empty. Several instances starting at once may
/// both see it empty; the worst case is a second copy of the demo concerts, harmless in a demo.
pub async fn seed_if_empty(
    catalog: &dyn CatalogRepository,
    create: &CreateConcert,
    admin_key: Option<&str>,
) -> anyhow::Result<u32> {
    if catalog.has_concerts().await? {
        return Ok(0);
    }
    let today = OffsetDateTime::now_utc().date();
    let concerts = [
        (
            "Winter Symphony Gala",
            vec![(7, 120_000, None), (8, 120_000, None), (14, 150_000, None)],
        ),
        (
            "Indie Rock Night",
            vec![(10, 55_000, None), (11, 55_000, None)],
        ),
        ("Jazz at the Harbour", vec![(21, 80_000, Some(20))]),
    ];
    let mut created = 0;
    for (title, dates) in concerts {
        let command = CreateConcertCommand {
            title: title.to_owned(),
            dates: dates
                .into_iter()
                .map(|(days, price, seat_count)| NewDateCommand {
                    date: today + Duration::days(days),
                    price,
                    seat_count,
                })
                .collect(),
        };
        create.execute(admin_key, command).await?;
        created += 1;
    }
    Ok(created)
}
