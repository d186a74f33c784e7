"""Status tiers: a status token granted when a user's lifetime-earned credits cross a threshold."""
