"""reward_service package."""
