//! Use case: an administrator adds a concert with its dates, prices and seat counts.

use std::sync::Arc;

use concert_domain::{
    ConcertId, ConcertTitle, NewConcert, NewConcertDate, ParseError, Price, SeatCount,
};
use time::Date;

use crate::ports::{CatalogRepository, Clock, RepositoryError};

/// The administrators' shared secret (`ADMIN_API_KEY`); with none configured, nobody is admitted.
#[derive(Clone, Default)]
pub struct AdminKey(Option<String>);

impl AdminKey {
    pub fn new(key: Option<String>) -> Self {
        Self(key.filter(|key| !key.is_empty()))
    }

    /// Compares in time independent of where the first difference is.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        let (Some(expected), Some(presented)) = (&self.0, presented) else {
            return false;
        };
        let (a, b) = (expected.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AdminKey(set)"
        } else {
            "AdminKey(none)"
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDateCommand {
    pub date: Date,
    pub price: i64,
    pub seat_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateConcertCommand {
    pub title: String,
    pub dates: Vec<NewDateCommand>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateConcertError {
    #[error("the admin key is missing or wrong")]
    AdminKeyInvalid,
    #[error(transparent)]
    Invalid(ParseError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct CreateConcert {
    catalog: Arc<dyn CatalogRepository>,
    clock: Arc<dyn Clock>,
    admin_key: AdminKey,
    max_price: i64,
}

impl CreateConcert {
    pub fn new(
        catalog: Arc<dyn CatalogRepository>,
        clock: Arc<dyn Clock>,
        admin_key: AdminKey,
        max_price: i64,
    ) -> Self {
        Self {
            catalog,
            clock,
            admin_key,
            max_price,
        }
    }

    #[tracing::instrument(name = "create_concert", skip_all)]
    pub async fn execute(
        &self,
        presented_key: Option<&str>,
        command: CreateConcertCommand,
    ) -> Result<ConcertId, CreateConcertError> {
        if !self.admin_key.admits(presented_key) {
            return Err(CreateConcertError::AdminKeyInvalid);
        }
        let concert = self.parse(command).map_err(CreateConcertError::Invalid)?;
        Ok(self.catalog.create_concert(&concert).await?)
    }

    fn parse(&self, command: CreateConcertCommand) -> Result<NewConcert, ParseError> {
        let title = ConcertTitle::parse(&command.title)?;
        let dates = command
            .dates
            .into_iter()
            .map(|entry| {
                Ok(NewConcertDate {
                    date: entry.date,
                    price: Price::parse(entry.price, self.max_price)?,
                    seats: entry
                        .seat_count
                        .map(SeatCount::parse)
                        .transpose()?
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;
        NewConcert::new(title, dates, self.clock.now().date())
    }
}
