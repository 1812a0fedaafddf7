"""OTP: verification codes owned by smsrelay (``verify``) and conversion feedback."""
