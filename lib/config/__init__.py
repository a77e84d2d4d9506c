"""Configuration: deploy-fixed env settings (env.py); operator-tunable app_config comes later."""
