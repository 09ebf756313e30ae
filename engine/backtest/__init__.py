"""Backtesting: simulated-market replay now; bhavcopy replay with the backtest issue."""
