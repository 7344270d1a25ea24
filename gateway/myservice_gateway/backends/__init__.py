"""Where sessions' instances come from. `base` is the interface the proxy uses;
`local` runs instances as child processes; `kubernetes` asks the operator."""
