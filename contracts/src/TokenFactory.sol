// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {CreditToken} from "./CreditToken.sol";
import {RewardsToken} from "./RewardsToken.sol";

/// @title Creates a tenant's token contracts as EIP-1167 clones of implementations it deploys
/// (and locks) itself. Tenant onboarding is one `multicall` of `createRewards` and `createCredit`.
/// Clones are deployed with CREATE2, so their addresses are known before deployment: a retried
/// deployment finds the contract already there instead of creating a second one.
contract TokenFactory is Multicall {
    enum ContractKind {
        Credit,
        Rewards
    }

    CreditToken public immutable creditImplementation;
    RewardsToken public immutable rewardsImplementation;

    /// @notice The indexer discovers tenant contracts from this event.
    event TenantContractCreated(bytes32 indexed tenantKey, ContractKind indexed kind, address contractAddress);

    constructor() {
        address[] memory none = new address[](0);
        creditImplementation = new CreditToken();
        creditImplementation.initialize("", "", 0, 0, address(0), none);
        rewardsImplementation = new RewardsToken();
        rewardsImplementation.initialize("", address(0), none);
    }

    function createCredit(
        bytes32 tenantKey,
        bytes32 salt,
        string calldata name,
        string calldata symbol,
        uint8 decimals,
        uint248 maxSupply,
        address admin,
        address[] calldata minters
    ) external returns (address token) {
        token = Clones.cloneDeterministic(address(creditImplementation), _creditSalt(tenantKey, salt));
        CreditToken(token).initialize(name, symbol, decimals, maxSupply, admin, minters);
        emit TenantContractCreated(tenantKey, ContractKind.Credit, token);
    }

    function createRewards(bytes32 tenantKey, string calldata uri, address admin, address[] calldata minters)
        external
        returns (address token)
    {
        token = Clones.cloneDeterministic(address(rewardsImplementation), tenantKey);
        RewardsToken(token).initialize(uri, admin, minters);
        emit TenantContractCreated(tenantKey, ContractKind.Rewards, token);
    }

    /// @notice Where `createCredit(tenantKey, salt, …)` deploys (or deployed) its clone.
    function creditAddress(bytes32 tenantKey, bytes32 salt) external view returns (address) {
        return Clones.predictDeterministicAddress(address(creditImplementation), _creditSalt(tenantKey, salt));
    }

    /// @notice Where `createRewards(tenantKey, …)` deploys (or deployed) the tenant's ERC-1155.
    function rewardsAddress(bytes32 tenantKey) external view returns (address) {
        return Clones.predictDeterministicAddress(address(rewardsImplementation), tenantKey);
    }

    function _creditSalt(bytes32 tenantKey, bytes32 salt) private pure returns (bytes32) {
        return keccak256(abi.encode(tenantKey, salt));
    }
}
