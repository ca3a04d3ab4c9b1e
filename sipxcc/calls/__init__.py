"""Call control: the registry of calls and one state machine per connection flow."""
