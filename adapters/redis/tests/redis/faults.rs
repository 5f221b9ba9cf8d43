//! What only a line on Redis meets: the server killed, frozen, restarted empty.
