"""Chain adapter: AudiFi's contracts (compiled artifacts) and the code that talks to them."""
