#compdef siderctl

_siderctl_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _SIDERCTL_COMPLETE=complete_zsh siderctl)
}

compdef _siderctl_completion siderctl
