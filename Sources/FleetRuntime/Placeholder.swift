public enum _FleetRuntimePlaceholder {}
