"""The KinderMM-Cap reference recipe on TRL: SFT warm-up (trainers.sft), then RSRS (trainers.rsrs)."""
